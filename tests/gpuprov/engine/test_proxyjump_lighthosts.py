"""ProxyJump hops (from the operator's ~/.ssh/config) are checked strictly against the
cluster's known_hosts, by pyinfra connections and by the hook runner's system ssh
(issue 13 item 20). Real sshd light hosts; marker `host`, root only."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuprov.inventory.model import Host, SSHSettings
from gpuprov.rollout.hooks import SSHHookRunner

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(2, prefix="jump") as lab:
        yield lab


@pytest.fixture
def setup(lab, tmp_path: Path, monkeypatch):
    """The operator's config: reach the target through the jump host, and (carelessly)
    accept any key for the jump host, from ~/.ssh/known_hosts. The cluster's
    known_hosts has the target's key only."""
    from gpuprov.testbed.inventory import write_lab_inventory

    jump, target = lab.hosts
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/config").write_text(
        f"Host {target.address}\n    ProxyJump root@{jump.address}\n\n"
        f"Host {jump.address}\n    IdentityFile {lab.key_path}\n"
        "    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n"
    )
    monkeypatch.setenv("HOME", str(home))
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{target.address} {target.host_key_pub}\n")
    inv = write_lab_inventory(
        tmp_path / "lab.yaml", hosts=[(target.name, target.address)], key=lab.key_path,
        known_hosts=kh, os="debian12",
    )  # fmt: skip
    return jump, target, inv, kh


def facts(inv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", "facts", str(inv), "--output", "json"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=180,
        env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip


def test_pyinfra_hop_needs_the_clusters_known_hosts(lab, setup):
    jump, target, inv, kh = setup
    proc = facts(inv)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"ProxyJump hop {jump.address}" in proc.stderr and "is not in" in proc.stderr
    assert str(kh) in proc.stderr
    with kh.open("a") as f:
        f.write(f"{jump.address} {jump.host_key_pub}\n")
    proc = facts(inv)
    assert proc.returncode == 0, proc.stderr
    # a wrong key recorded for the hop (the target's): refused, so the hop is really used
    other = target.host_key_pub
    kh.write_text(f"{target.address} {target.host_key_pub}\n{jump.address} {other}\n")
    proc = facts(inv)
    assert proc.returncode == 3 and "DOES NOT MATCH" in proc.stderr, proc.stderr
    assert f"ProxyJump hop {jump.address}" in proc.stderr


def test_hook_runner_hop_needs_the_clusters_known_hosts(lab, setup):
    jump, target, inv, kh = setup
    hook_host = Host(
        target.name, target.address, "controller", "ctl",
        SSHSettings(user="root", key=lab.key_path, known_hosts=kh), None, None,
    )  # fmt: skip
    runner = SSHHookRunner(hook_host, kh, timeout=60)
    assert not runner.run("echo drained {host}", hook_host).ok
    with kh.open("a") as f:
        f.write(f"{jump.address} {jump.host_key_pub}\n")
    result = runner.run("echo drained {host}", hook_host)
    assert result.ok and f"drained {target.name}" in result.output, result
