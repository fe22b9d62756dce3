"""`gpuprov hosts trust` against real sshd light hosts (marker `host`, root only):
a key of another type is a change (issue 13 item 4), and concurrent runs lose nothing
(item 21)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

pytestmark = pytest.mark.host

HOSTS = 6


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(HOSTS, prefix="trst") as lab:
        yield lab


def inventory(lab, tmp: Path) -> Path:
    from gpuprov.testbed.inventory import write_lab_inventory

    return write_lab_inventory(
        tmp / "lab.yaml",
        hosts=[(h.name, h.address) for h in lab.hosts],
        key=lab.key_path,
        known_hosts=tmp / "known_hosts",
        os="debian12",
    )


def trust(inv: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gpuprov.cli", "hosts", "trust", str(inv), "--yes", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=inv.parent,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_a_key_of_another_type_is_a_change_not_new(lab, tmp_path: Path):
    """The host offers its ed25519 key; the file records an ECDSA key for it (what the
    operator saw first). Before the fix the ed25519 key was "new" and added under --yes."""
    inv = inventory(lab, tmp_path)
    host = lab.hosts[0]
    other = paramiko.ECDSAKey.generate()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{host.address} {other.get_name()} {other.get_base64()}\n")
    proc = trust(inv, "--limit", host.name)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode != 0, out + err
    assert "HOST KEY CHANGED" in err and "--replace" in err and "another type" in err
    assert kh.read_text() == f"{host.address} {other.get_name()} {other.get_base64()}\n"
    proc = trust(inv, "--limit", host.name, "--replace")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert kh.read_text().split() == [host.address, *host.host_key_pub.split()[:2]]


def test_concurrent_trust_runs_lose_nothing(lab, tmp_path: Path):
    inv = inventory(lab, tmp_path)
    procs = [trust(inv, "--limit", h.name) for h in lab.hosts]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
    recorded = (tmp_path / "known_hosts").read_text()
    for h in lab.hosts:
        assert f"{h.address} {' '.join(h.host_key_pub.split()[:2])}" in recorded
    assert len(recorded.splitlines()) == HOSTS
