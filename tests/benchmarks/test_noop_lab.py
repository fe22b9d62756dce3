"""`python -m benchmarks.noop_breakdown --lab` without a converged lab: it says why and
exits 2 (never a traceback, nothing converged or booted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.noop_breakdown", "--lab", "--rounds", "1", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


def test_no_inventory(tmp_path: Path) -> None:
    proc = lab("--inventory", str(tmp_path / "vagrant.yaml"))
    assert proc.returncode == 2, proc
    assert proc.stdout.startswith("noop_breakdown --lab: no converged lab to measure: ")
    assert f"{tmp_path / 'vagrant.yaml'}: not found" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_an_inventory_whose_lab_was_never_made(tmp_path: Path) -> None:
    """The checked-in lab inventory names the keyring a demo makes (lab/bundle.gpg)."""
    inv = tmp_path / "inventories" / "vagrant.yaml"
    inv.parent.mkdir()
    inv.write_text((REPO / "inventories" / "vagrant.yaml").read_text())
    proc = lab("--inventory", str(inv))
    assert proc.returncode == 2, proc
    assert "does not load" in proc.stdout and "cluster.mirror.keyring" in proc.stdout
    assert "make demo" in proc.stdout and "Traceback" not in proc.stderr
