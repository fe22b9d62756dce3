"""`gpuprov bundle build` refuses bad input before fetching anything: exit 2, every
message named, no traceback, no bundle directory left behind (no network needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

INVENTORY = """\
cluster:
  stack:
    os: debian12
    driver: {branch: "580", version: "580.95.05"}
  mirror: {host: mirror01}
BUNDLE
groups:
  hgx:
    profile: hgx-h100-8
    hosts:
      gpu001: {address: 10.0.0.1}
  mirror:
    role: mirror
    hosts:
      mirror01: {address: 10.0.0.5}
"""
BUNDLE = """\
  bundle:
    targets:
      debian12:
        sources:
          - {url: "http://deb.invalid/debian", suites: [bookworm], components: [main], keyring: k.gpg}
"""


def gpuprov(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def inventory(tmp_path) -> Path:
    (tmp_path / "k.gpg").write_bytes(b"not fetched before the checks below")
    path = tmp_path / "site.yaml"
    path.write_text(INVENTORY.replace("BUNDLE\n", BUNDLE))
    return path


def refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_inventory_without_bundle_section(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(INVENTORY.replace("BUNDLE\n", ""))
    refused(
        gpuprov("bundle", "build", path, "--dry-run"),
        "no `cluster.bundle.targets:` in the inventory",
    )


def test_bad_bundle_section_is_located(inventory):
    inventory.write_text(inventory.read_text().replace("keyring: k.gpg", "keyring: gone.gpg"))
    done = gpuprov("bundle", "build", inventory, "--dry-run")
    line = next(
        i + 1 for i, text in enumerate(inventory.read_text().splitlines()) if "gone.gpg" in text
    )
    refused(done, f"{inventory}:{line}:")
    assert "keyring: file not found" in done.stderr


def test_out_must_be_new_or_empty(inventory, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "precious").write_text("keep me")
    refused(gpuprov("bundle", "build", inventory, "--to", out, "--key-home", tmp_path),
            "output exists and is not an empty directory")  # fmt: skip
    assert (out / "precious").read_text() == "keep me"


def test_out_or_dry_run_and_key_home_are_needed(inventory, tmp_path):
    refused(gpuprov("bundle", "build", inventory), "--to DIR is needed (or --dry-run)")
    out = tmp_path / "bundle"
    refused(
        gpuprov("bundle", "build", inventory, "--to", out), "the bundle key's GnuPG home is needed"
    )
    done = gpuprov("bundle", "build", inventory, "--to", out, "--key-home", tmp_path / "nokeys")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "does not exist" in done.stderr
    assert not out.exists() and not list(tmp_path.glob(".bundle.building-*"))
