"""NodeFacts really runs here through pyinfra's @local connector: HostState's sections,
the managed files' digests, the CDI spec's driver and the identity file's mode and
digest, all from one command."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gpuprov.facts.node_facts import NodeFacts


def local_fact(**kwargs):
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all

    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    connect_all(state)
    try:
        return inventory.get_host("@local").get_fact(NodeFacts, **kwargs)
    finally:
        disconnect_all(state)


def test_one_command_answers_all_three(tmp_path: Path) -> None:
    managed = tmp_path / "managed.conf"
    managed.write_text("options nouveau modeset=0\n")
    identity = tmp_path / "host.json"
    identity.write_text('{"host": "gpu001"}\n')
    identity.chmod(0o640)
    spec = tmp_path / "nvidia.yaml"
    spec.write_text("  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.580.95.05\n")

    facts = local_fact(
        paths=(str(managed), str(tmp_path / "absent.conf")),
        cdi_spec=str(spec),
        identity_file=str(identity),
    )
    assert facts.state.kernel == os.uname().release and facts.state.problems == []
    assert facts.extras["digests"] == {
        str(managed): hashlib.sha256(managed.read_bytes()).hexdigest(),
        str(tmp_path / "absent.conf"): None,
    }
    assert facts.extras["cdi_driver"] == "580.95.05"
    assert facts.identity is not None and facts.identity["mode"] == "640"
    assert facts.identity["sha256"] == hashlib.sha256(identity.read_bytes()).hexdigest()


def test_absent_identity_and_spec(tmp_path: Path) -> None:
    facts = local_fact(
        paths=(), cdi_spec=str(tmp_path / "none.yaml"), identity_file=str(tmp_path / "x.json")
    )
    assert facts.identity is None
    assert facts.extras["cdi_driver"] is None
    assert facts.state.os is not None


def test_reports_its_own_runtime(tmp_path: Path) -> None:
    """The script times itself (`--timings`: the host's share of the round trip)."""
    import time

    start = time.perf_counter()
    facts = local_fact(
        paths=(), cdi_spec=str(tmp_path / "none.yaml"), identity_file=str(tmp_path / "x.json")
    )
    outside = time.perf_counter() - start
    assert facts.script_seconds is not None
    assert 0 < facts.script_seconds < outside


def test_runtime_stamps_parse_or_read_as_unknown() -> None:
    from gpuprov.facts.node_facts import parse_runtime

    assert parse_runtime("1700000000000000000 1700000000250000000\n") == 0.25
    # a date without %N prints a literal N; a clock stepped back; one stamp missing
    for bad in ("1700000000N 1700000001N", "1700000001000000000 1700000000000000000", " 17"):
        assert parse_runtime(bad) is None
