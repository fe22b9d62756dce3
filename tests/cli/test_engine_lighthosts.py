"""The engine's commands on the test bed's light hosts: real sshd servers, each in its own
network namespace with its own root filesystem (gpuprov.testbed.lighthosts). Root only.

Preflight writes the real /etc/gpuprov/host.json inside each host here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(3, prefix="engt") as lab:
        yield lab


def gpuprov(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        timeout=180,
    )


def host_lines(stderr: str) -> list[str]:
    """stderr without the static checks' located notes (`lab.yaml:5:5: note: ...`)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and "lab.yaml:" not in ln]


def inventory(lab, tmp: Path) -> Path:
    """The lab's inventory with a fresh known_hosts (so `hosts trust` has work to do); the
    light hosts have no GPUs and no headers for the host kernel, which the lab declares."""
    from gpuprov.testbed.inventory import write_lab_inventory

    path = write_lab_inventory(
        tmp / "lab.yaml",
        hosts=[(h.name, h.address) for h in lab.hosts],
        key=lab.key_path,
        known_hosts=tmp / "known_hosts",
        os="debian12",
    )
    yaml = YAML()
    data = yaml.load(path.read_text())
    data["groups"]["gpu"]["vars"] = {
        "gpuprov_min_free_gb": 0.1,
        "gpuprov_preflight_ignore": ["headers", "gpus"],
        # No GPUs and no mirror here: preflight only (the stack is proven on VMs).
        "gpuprov_stack": False,
    }
    with path.open("w") as fh:
        yaml.dump(data, fh)
    return path


def test_trust_facts_plan_apply_on_light_hosts(lab, tmp_path: Path):
    inv = inventory(lab, tmp_path)
    names = [h.name for h in lab.hosts]

    def identity(name: str) -> subprocess.CompletedProcess[str]:
        return lab.exec(name, "cat /etc/gpuprov/host.json", check=False)

    proc = gpuprov("plan", str(inv), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    lines = host_lines(proc.stderr)
    assert len(lines) == 3 and all("host key not in" in line for line in lines)

    proc = gpuprov("hosts", "trust", str(inv), "--yes", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    recorded = (tmp_path / "known_hosts").read_text()
    for h in lab.hosts:
        assert f"{h.address} {' '.join(h.host_key_pub.split()[:2])}" in recorded

    proc = gpuprov("facts", str(inv), "--output", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert sorted(facts) == sorted(names)
    uname = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    assert all(f["ok"] and f["os"] == "debian12" and f["kernel"] == uname for f in facts.values())

    proc = gpuprov("plan", str(inv), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Plan: 3 changes on 3 of 3 ready hosts" in proc.stdout
    assert all(identity(n).returncode != 0 for n in names)  # the dry run changed nothing

    proc = gpuprov("apply", str(inv), "--yes", "--output", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert summary == {"hosts": 3, "failed": 0, "changed": 3, "status": "completed"}
    for n in names:
        assert json.loads(identity(n).stdout)["host"] == n

    proc = gpuprov("apply", str(inv), "--yes", "--output", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"] == {
        "hosts": 3, "failed": 0, "changed": 0, "status": "up-to-date"
    }  # fmt: skip

    # a host loses power: one line for it; it is in no wave of the staged rollout, the
    # other host converges, and the run ends with 3 (only a connection failed)
    lab.exec(names[1], "rm /etc/gpuprov/host.json")
    lab.kill(names[2])
    try:
        proc = gpuprov("apply", str(inv), "--yes", "--output", "json", cwd=tmp_path)
        assert proc.returncode == 3, proc.stderr
        lines = host_lines(proc.stderr)
        assert lines[0].startswith(f"{names[2]} ({lab.hosts[2].address}:22): unreachable")
        doc = json.loads(proc.stdout)
        report = doc["rollout"]
        assert report["status"] == "completed" and report["failed"] == []
        assert report["done"] == [names[1]] and report["skipped"] == [names[0]]
        assert report["plan"]["excluded"] == {names[2]: "unreachable"}
        assert doc["summary"]["failed"] == 1
        assert json.loads(identity(names[1]).stdout)["host"] == names[1]
    finally:
        lab.start_host(names[2])
