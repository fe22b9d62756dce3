"""`gpuprov repo keygen/publish/verify` end to end: exit codes and messages, no tracebacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if shutil.which("dpkg-deb") is None or shutil.which("gpg") is None:
    pytest.skip("dpkg-deb and gpg needed (make system-deps)", allow_module_level=True)


def gpuprov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_deb(folder: Path, name: str) -> Path:
    root = folder / f"src-{name}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t.invalid>\n"
        "Description: cli test\n"
    )
    out = folder / "debs" / f"{name}.deb"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", root, out], check=True, capture_output=True
    )
    return out


def test_keygen_publish_verify(tmp_path):
    home, keyring, out = tmp_path / "keys", tmp_path / "site.gpg", tmp_path / "repo"
    made = gpuprov(
        "repo",
        "keygen",
        "--home",
        home,
        "--name",
        "Lab mirror",
        "--email",
        "ops@lab.invalid",
        "--export",
        keyring,
    )
    assert made.returncode == 0, made.stderr
    assert "created ed25519 key" in made.stdout and keyring.is_file()

    again = gpuprov("repo", "keygen", "--home", home, "--name", "x", "--email", "x@x")
    assert again.returncode == 2 and "already holds secret key" in again.stderr
    assert "Traceback" not in again.stderr

    make_deb(tmp_path, "hello")
    pub = gpuprov(
        "repo",
        "publish",
        tmp_path / "debs",
        "--to",
        out,
        "--suite",
        "lab",
        "--key-home",
        home,
        "-o",
        "json",
    )
    assert pub.returncode == 0, pub.stderr
    assert '"filename": "pool/main/h/hello/hello_1.0_all.deb"' in pub.stdout

    ok = gpuprov("repo", "verify", out, "--keyring", keyring)
    assert ok.returncode == 0, ok.stderr
    assert "signatures and hashes ok" in ok.stdout

    deb = out / "pool/main/h/hello/hello_1.0_all.deb"
    deb.write_bytes(deb.read_bytes() + b"!")
    bad = gpuprov("repo", "verify", out, "--keyring", keyring)
    assert bad.returncode == 1
    assert f"{deb}: error: hello 1.0 (all): size" in bad.stderr


def test_publish_errors_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    none = gpuprov(
        "repo",
        "publish",
        tmp_path / "empty",
        "--to",
        tmp_path / "r",
        "--suite",
        "s",
        "--key-home",
        tmp_path / "k",
    )
    assert none.returncode == 2 and "no .deb files found" in none.stderr

    make_deb(tmp_path, "hello")
    nokey = gpuprov(
        "repo",
        "publish",
        tmp_path / "debs",
        "--to",
        tmp_path / "r",
        "--suite",
        "s",
        "--key-home",
        tmp_path / "k",
    )
    assert nokey.returncode == 2
    assert "does not exist (create one with: gpuprov repo keygen)" in nokey.stderr
    assert "Traceback" not in nokey.stderr
    assert not (tmp_path / "r").exists()


def test_broken_deb_is_bad_input_naming_the_file(tmp_path):
    home = tmp_path / "keys"
    assert (
        gpuprov(
            "repo", "keygen", "--home", home, "--name", "t", "--email", "t@t.invalid"
        ).returncode
        == 0
    )
    (tmp_path / "debs").mkdir()
    broken = tmp_path / "debs" / "broken.deb"
    broken.write_bytes(b"this is not an ar archive")
    pub = gpuprov(
        "repo",
        "publish",
        tmp_path / "debs",
        "--to",
        tmp_path / "r",
        "--suite",
        "s",
        "--key-home",
        home,
    )
    assert pub.returncode == 2
    assert pub.stderr.startswith(f"{broken}: error: not a readable .deb:"), pub.stderr
    assert "Traceback" not in pub.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debs", "keys"]


def test_keygen_expires_and_extend_key_renews(tmp_path):
    home, keyring = tmp_path / "keys", tmp_path / "site.gpg"
    made = gpuprov("repo", "keygen", "--home", home, "--name", "t", "--email", "t@t.invalid")
    assert made.returncode == 0, made.stderr
    assert ", expires 20" in made.stdout  # two years by default, not never
    bad = gpuprov("repo", "extend-key", "--home", home, "--expire", "soon", "--export", keyring)
    assert bad.returncode == 2 and "invalid key expiry 'soon'" in bad.stderr
    ext = gpuprov("repo", "extend-key", "--home", home, "--expire", "3y", "--export", keyring)
    assert ext.returncode == 0, ext.stderr
    assert "now expires 20" in ext.stdout and keyring.is_file()
    make_deb(tmp_path, "hello")
    pub = gpuprov(
        "repo", "publish", tmp_path / "debs", "--to", tmp_path / "r", "--suite", "s",
        "--key-home", home,
    )  # fmt: skip
    assert pub.returncode == 0, pub.stderr
    assert "valid until" in pub.stdout
    assert "Valid-Until:" in (tmp_path / "r/dists/s/Release").read_text()
