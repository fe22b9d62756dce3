"""`gpuprov apply|plan --timings` on light hosts: every phase is reported, the phases add
up to the wall the command reports, and that wall accounts for what the caller measured
from outside (all but the interpreter's exit); each host's fact round trip and the
NodeFacts script's own runtime on the host are reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def inv(tmp_path_factory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(2, prefix="tmgs") as lab:
        path = lab.write_inventory(tmp_path_factory.mktemp("timings") / "lab.yaml")
        yaml = YAML()
        doc = yaml.load(path.read_text())
        doc["groups"]["gpu"]["vars"] = {
            "gpuprov_stack": False,  # no systemd in a light host: preflight only
            "gpuprov_preflight_ignore": ["gpus", "headers", "disk", "secure_boot"],
        }
        with path.open("w") as fh:
            yaml.dump(doc, fh)
        assert gpuprov("apply", str(path), "--yes").returncode == 0  # converge
        yield path


def gpuprov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        timeout=180,
    )


PHASES = {"python startup", "cli", "inventory", "connect", "facts", "evaluate", "output"}


def check(doc: dict, outside: float) -> None:
    phases = doc["phases"]
    assert set(phases) >= PHASES, phases
    assert abs(sum(phases.values()) - doc["wall"]) < 0.01, doc
    # the process start is known to a 10 ms tick; after the report only exit remains
    assert doc["wall"] <= outside + 0.02, (doc, outside)
    assert outside - doc["wall"] < 0.5, (doc, outside)
    assert doc["phases"]["facts"] > 0 and doc["phases"]["connect"] > 0
    facts = doc["facts"]
    assert facts["hosts"] == 2
    assert 0 < facts["script"]["median"] <= facts["round_trip"]["median"]
    assert facts["round_trip"]["max"] <= phases["facts"] + 0.01
    hosts = doc["hosts"]  # each host apart: its connect within the parallel phase
    assert len(hosts) == 2, hosts
    for each in hosts.values():
        assert 0 < each["connect"] <= phases["connect"] + 0.01, doc
        assert 0 < each["script"] <= each["round_trip"] <= phases["facts"] + 0.01, doc


@pytest.mark.parametrize("command", ["apply", "plan"])
def test_json_timings_account_for_the_wall(inv: Path, command: str) -> None:
    extra = ["--yes"] if command == "apply" else []
    start = time.perf_counter()
    proc = gpuprov(command, str(inv), *extra, "-o", "json", "--timings")
    outside = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    if command == "apply":
        assert doc["summary"]["status"] == "up-to-date"
        assert "state read" in doc["timings"]["phases"]
    check(doc["timings"], outside)


def test_table_on_stderr_and_none_without_the_flag(inv: Path) -> None:
    proc = gpuprov("apply", str(inv), "--yes", "--timings")
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout and "timings" not in proc.stdout
    for word in ("connect", "facts", "evaluate", "wall", "fact round trip over 2 hosts"):
        assert word in proc.stderr, proc.stderr
    assert "the script on the host" in proc.stderr
    names = YAML().load(inv.read_text())["groups"]["gpu"]["hosts"]
    for name in names:  # one line per host
        assert any(line.strip().startswith(f"{name}: connect ") and "script" in line
                   for line in proc.stderr.splitlines()), proc.stderr  # fmt: skip
    plain = gpuprov("apply", str(inv), "--yes", "-o", "json")
    assert "timings" not in json.loads(plain.stdout)
    assert "fact round trip" not in gpuprov("plan", str(inv)).stderr
