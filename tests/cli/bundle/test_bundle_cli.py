"""`gpuprov bundle keygen/export/verify` end to end as a user runs them: exit codes,
messages, JSON and plain progress lines (stderr is not a terminal here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpuprov.bundle import layout

if shutil.which("gpg") is None or shutil.which("gpgv") is None:
    pytest.skip("gpg and gpgv needed (make system-deps)", allow_module_level=True)


def gpuprov(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_subcommand():
    out = gpuprov("bundle", "--help")
    assert out.returncode == 0
    for name in ("export", "import", "keygen", "rollback", "verify"):
        assert f"  {name} " in out.stdout


def test_keygen_export_verify(tmp_path: Path):
    home, keyring = tmp_path / "keyhome", tmp_path / "bundle.gpg"
    made = gpuprov("bundle", "keygen", "--home", home, "--name", "Site bundles",
                   "--email", "ops@example.invalid", "--export", keyring)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "created ed25519 bundle key" in made.stdout and keyring.is_file()
    again = gpuprov("bundle", "keygen", "--home", home, "--name", "x", "--email", "x@x.invalid")
    assert again.returncode == 2 and "already holds secret key" in again.stderr

    bundle = tmp_path / "bundle"
    (bundle / "models/org/m").mkdir(parents=True)
    (bundle / "models/org/m/weights.bin").write_bytes(os.urandom(200_000))
    (bundle / "apt/debian12").mkdir(parents=True)
    (bundle / "apt/debian12/Release").write_text("Suite: bookworm\n")
    layout.export_public_key(bundle, home)
    layout.write_manifest(bundle, layout.scan_tree(bundle))
    layout.sign_manifest(bundle, home)

    usb = tmp_path / "usb"
    usb.mkdir()
    out = gpuprov("bundle", "export", bundle, "--to", usb, "--chunk-size", 65536,
                  "--output", "json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["bytes_written"] == result["bytes_total"] > 200_000
    assert result["chunk_size"] == 65536 and out.stderr == ""

    text = gpuprov("bundle", "export", bundle, "--to", usb, "--chunk-size", 65536)
    assert text.returncode == 0
    assert "0 bytes written" in text.stdout
    assert "export: " in text.stderr and "/s, ETA" in text.stderr  # plain progress lines

    ok = gpuprov("bundle", "verify", usb, "--keyring", keyring)
    assert ok.returncode == 0, ok.stderr
    assert "is intact: signed by" in ok.stdout

    (usb / "models/org/m/weights.bin.part0001").unlink()
    bad = gpuprov("bundle", "verify", usb, "--keyring", keyring, "--output", "json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["findings"] == [
        {
            "name": "models/org/m/weights.bin.part0001",
            "message": "missing chunk 2 of 4 of models/org/m/weights.bin",
        }
    ]

    no_keyring = gpuprov("bundle", "verify", usb, "--keyring", tmp_path / "nope.gpg")
    assert no_keyring.returncode == 2
    assert "nope.gpg: error: keyring not found" in no_keyring.stderr
    no_media = gpuprov("bundle", "export", bundle, "--to", tmp_path / "unplugged")
    assert no_media.returncode == 2 and "not a directory" in no_media.stderr
    assert "Traceback" not in no_keyring.stderr + no_media.stderr
