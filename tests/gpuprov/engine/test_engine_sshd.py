"""The engine end to end against a real OpenSSH server on loopback (root only).

The preflight change is confined to a scratch directory through the `gpuprov_root`
host var, because this sshd serves this machine's real root filesystem.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from clusters import make_cluster
from gpuprov.deploys.preflight import preflight
from loopback_sshd import LoopbackSshd, free_port

from gpuprov.engine import known_hosts
from gpuprov.engine.apply import execute
from gpuprov.engine.connect import connect
from gpuprov.engine.gather import gather
from gpuprov.engine.plan import prepare
from gpuprov.errors import ConnectError, ExitCode
from gpuprov.facts.host_state import HostState

pytestmark = pytest.mark.host


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text() if p.is_file() else "<dir>" for p in root.rglob("*")
    }


@pytest.fixture
def cluster(tmp_path: Path, sshd: LoopbackSshd):
    (tmp_path / "root").mkdir()
    return make_cluster(
        tmp_path, [("node1", "127.0.0.1", sshd.port)], sshd.client_key, tmp_path / "root"
    )


def trust(cluster) -> None:
    keys = known_hosts.scan(cluster.select(None), cluster.known_hosts_path)
    assert [k.status for k in keys] == ["new"]
    assert known_hosts.record(cluster.known_hosts_path, keys) == 1


def test_unknown_host_key_is_one_line_and_changes_nothing(cluster, tmp_path):
    with pytest.raises(ConnectError) as exc:
        connect(cluster, cluster.select(None))
    assert exc.value.exit_code == ExitCode.CONNECT_FAILED
    lines = str(exc.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("node1 (127.0.0.1:")
    assert "host key not in" in lines[0] and "gpuprov hosts trust" in lines[0]
    assert snapshot(tmp_path / "root") == {}


def test_trust_records_the_servers_key(cluster, sshd):
    trust(cluster)
    line = cluster.known_hosts_path.read_text().strip()
    key_type, key_b64 = sshd.host_pub.split()[:2]
    assert line == f"[127.0.0.1]:{sshd.port} {key_type} {key_b64}"
    # the fingerprint shown is the one ssh-keygen computes
    out = subprocess.run(
        ["ssh-keygen", "-lf", "-"], input=sshd.host_pub, capture_output=True, text=True, check=True
    ).stdout
    again = known_hosts.scan(cluster.select(None), cluster.known_hosts_path)
    assert again[0].status == "known"
    assert again[0].fingerprint in out


def test_changed_key_is_refused_and_not_replaced(cluster, sshd, tmp_path):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True
    )
    other = (tmp_path / "other.pub").read_text().split()
    cluster.known_hosts_path.write_text(f"# kept\n[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    keys = known_hosts.scan(cluster.select(None), cluster.known_hosts_path)
    assert keys[0].status == "changed" and keys[0].recorded_fingerprint
    assert known_hosts.record(cluster.known_hosts_path, keys) == 0
    with pytest.raises(ConnectError, match="HOST KEY CHANGED"):
        connect(cluster, cluster.select(None))
    assert known_hosts.record(cluster.known_hosts_path, keys, replace=True) == 1
    text = cluster.known_hosts_path.read_text()
    assert text.startswith("# kept\n") and other[1] not in text
    connect(cluster, cluster.select(None)).close()


def test_facts_plan_apply_idempotent(cluster, tmp_path):
    trust(cluster)
    hosts = cluster.select(None)
    with connect(cluster, hosts) as session:
        facts = gather(session, HostState)["node1"]
    assert facts.ok, facts.error
    os_release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    assert facts.data.os.id == os_release["ID"].strip('"')
    assert (
        facts.data.kernel
        == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    )
    assert facts.data.root_free_bytes > 0

    target = tmp_path / "root" / "node1" / "etc" / "gpuprov" / "host.json"
    with connect(cluster, hosts) as session:
        plan = prepare(session, [preflight])
    names = [c.name for c in plan.hosts["node1"].changes]
    assert any("host.json" in n for n in names), names
    assert snapshot(tmp_path / "root") == {}  # the dry run changed nothing

    with connect(cluster, hosts) as session:
        plan = prepare(session, [preflight])
        events = []
        result = execute(session, plan, lambda *e: events.append(e))
    assert result.hosts["node1"].status == "ok" and result.hosts["node1"].changed >= 1
    assert any(outcome == "changed" for _, _, outcome in events)
    assert json.loads(target.read_text()) == {
        "managed_by": "gpuprov",
        "cluster": "testcluster",
        "host": "node1",
        "group": "lab",
        "role": "gpu",
        "profile": None,
    }

    with connect(cluster, hosts) as session:
        plan = prepare(session, [preflight])
        assert plan.changes == 0
        result = execute(session, plan)
    assert result.changed == 0 and result.hosts["node1"].status == "ok"

    # drift is noticed and repaired
    target.write_text("{}")
    with connect(cluster, hosts) as session:
        plan = prepare(session, [preflight])
        assert [c.name for c in plan.hosts["node1"].changes] == [
            n for n in names if "host.json" in n
        ]
        execute(session, plan)
    assert json.loads(target.read_text())["host"] == "node1"

    target.chmod(0o600)  # only the mode drifted
    with connect(cluster, hosts) as session:
        plan = prepare(session, [preflight])
        assert plan.changes == 1
        execute(session, plan)
    assert target.stat().st_mode & 0o777 == 0o644


def test_refused_host_is_not_touched(tmp_path, sshd):
    (tmp_path / "root").mkdir()
    cluster = make_cluster(
        tmp_path, [("big", "127.0.0.1", sshd.port)], sshd.client_key, tmp_path / "root"
    )
    host = cluster.hosts["big"]
    host.vars["gpuprov_min_free_gb"] = 10**9  # a petabyte free: no host has that
    trust(cluster)
    with connect(cluster, cluster.select(None)) as session:
        plan = prepare(session, [preflight])
        result = execute(session, plan)
    assert plan.hosts["big"].status == "refused"
    assert "GB free on /" in plan.hosts["big"].error and "\n" not in plan.hosts["big"].error
    assert result.hosts["big"].status == "refused"
    assert snapshot(tmp_path / "root") == {}


def test_unreachable_and_bad_auth_are_one_line_each(tmp_path, sshd):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")],
        check=True,
    )
    closed = free_port()
    cluster = make_cluster(
        tmp_path, [("up", "127.0.0.1", sshd.port), ("down", "127.0.0.1", closed)], sshd.client_key
    )
    trust_keys = known_hosts.scan([cluster.hosts["up"]], cluster.known_hosts_path)
    known_hosts.record(cluster.known_hosts_path, trust_keys)
    with connect(cluster, cluster.select(None)) as session:
        assert session.connected == ["up"]
        [down] = session.failed
    assert down.kind == "unreachable" and "\n" not in down.message
    assert down.message.startswith(f"down (127.0.0.1:{closed}): unreachable")

    from dataclasses import replace

    up = cluster.hosts["up"]
    cluster.hosts["up"] = replace(up, ssh=replace(up.ssh, key=tmp_path / "stranger"))
    with pytest.raises(ConnectError) as exc:
        connect(cluster, [cluster.hosts["up"]])
    assert "authentication failed as 'root'" in str(exc.value)
    assert len(str(exc.value).splitlines()) == 1
