"""Real apt-get against a published repository served over loopback HTTP: apt must accept
the signed repository and refuse every tampered or wrongly-keyed variant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpuprov.aptrepo import publish_repo, verify_repo

# Recent: the Release is valid for 90 days after its Date (publish's default Valid-Until).
DATE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def repo(tmp_path, debs, key) -> Path:
    publish_repo(debs, tmp_path / "repo", suite="stable", key=key, date=DATE)
    return tmp_path / "repo"


def flip_byte(path: Path, needle: bytes) -> None:
    """Change one byte inside `needle` (keeps the size, so only hashes/signatures can tell)."""
    data = bytearray(path.read_bytes())
    at = data.index(needle)
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def errors(problems) -> list[str]:
    return [str(p) for p in problems if p.severity == "error"]


def test_apt_updates_and_downloads_with_exact_version_dependency(repo, keyring, apt, serve):
    apt.configure(serve(repo), keyring)
    update = apt.run("update")
    assert update.returncode == 0, update.stdout + update.stderr
    assert "InRelease" in update.stdout
    assert "W:" not in update.stderr and "E:" not in update.stderr, update.stderr
    install = apt.run("install", "-y", "--download-only", "alpha")
    assert install.returncode == 0, install.stdout + install.stderr
    got = sorted(p.name for p in (apt.root / "archives").glob("*.deb"))
    # beta comes along because alpha Depends on exactly beta (= 2:2.0-1)
    assert got == ["alpha_1.0-1_amd64.deb", "beta_2%3a2.0-1_all.deb"]
    assert verify_repo(repo, keyring) == []


def test_tampered_inrelease_is_refused(repo, keyring, apt, serve):
    flip_byte(repo / "dists/stable/InRelease", b"Origin: gpuprov")
    apt.configure(serve(repo), keyring)
    update = apt.run("update")
    assert update.returncode != 0
    assert "BADSIG" in update.stderr or "signature" in update.stderr.lower(), update.stderr
    assert "is not signed" in update.stderr
    assert any("InRelease" in e and "BADSIG" in e for e in errors(verify_repo(repo, keyring)))


def test_tampered_release_without_inrelease_is_refused(repo, keyring, apt, serve):
    (repo / "dists/stable/InRelease").unlink()
    flip_byte(repo / "dists/stable/Release", b"Origin: gpuprov")
    apt.configure(serve(repo), keyring)
    update = apt.run("update")
    assert update.returncode != 0
    assert "BADSIG" in update.stderr, update.stderr
    assert any("Release.gpg" in e and "BADSIG" in e for e in errors(verify_repo(repo, keyring)))


def test_tampered_packages_index_is_refused(repo, keyring, apt, serve):
    for name in ("Packages", "Packages.gz", "Packages.xz"):
        index = repo / "dists/stable/main/binary-amd64" / name
        data = bytearray(index.read_bytes())
        data[len(data) // 2] ^= 0x01
        index.write_bytes(bytes(data))
    apt.configure(serve(repo), keyring)
    update = apt.run("update")
    assert update.returncode != 0
    assert "Hash Sum mismatch" in update.stderr or "File has unexpected size" in update.stderr, (
        update.stderr
    )
    found = errors(verify_repo(repo, keyring))
    assert any("binary-amd64/Packages:" in e and "mismatch" in e for e in found), found


def test_tampered_deb_is_refused(repo, keyring, apt, serve, debs):
    deb = repo / "pool/main/a/alpha/alpha_1.0-1_amd64.deb"
    data = bytearray(deb.read_bytes())
    data[-10] ^= 0x01
    deb.write_bytes(bytes(data))
    apt.configure(serve(repo), keyring)
    assert apt.run("update").returncode == 0
    install = apt.run("install", "-y", "--download-only", "alpha")
    assert install.returncode != 0
    assert "Hash Sum mismatch" in install.stderr, install.stderr
    found = errors(verify_repo(repo, keyring))
    assert found == [f"{deb}: error: alpha 1.0-1 (amd64): sha256 mismatch with Packages"]


def test_grown_deb_is_refused_for_its_size(repo, keyring, apt, serve):
    deb = repo / "pool/main/b/beta/beta_2.0-1_all.deb"
    deb.write_bytes(deb.read_bytes() + b"x")
    apt.configure(serve(repo), keyring)
    assert apt.run("update").returncode == 0
    install = apt.run("install", "-y", "--download-only", "beta")
    assert install.returncode != 0
    assert "unexpected size" in install.stderr or "Hash Sum mismatch" in install.stderr, (
        install.stderr
    )
    assert any("size" in e for e in errors(verify_repo(repo, keyring)))


def test_wrong_key_in_signed_by_is_refused(repo, other_keyring, apt, serve):
    apt.configure(serve(repo), other_keyring)
    update = apt.run("update")
    assert update.returncode != 0
    assert "NO_PUBKEY" in update.stderr, update.stderr
    found = errors(verify_repo(repo, other_keyring))
    assert any("NO_PUBKEY" in e for e in found), found
