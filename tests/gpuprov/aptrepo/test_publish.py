"""publish_repo without apt: determinism, layout, duplicate and bad-input handling,
atomic replacement (apt itself is exercised in test_apt_client.py)."""

from __future__ import annotations

import gzip
import lzma
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpuprov.aptrepo import BadPackage, DuplicatePackageError, publish_repo, verify_repo
from gpuprov.aptrepo.deb822 import parse_paragraphs
from gpuprov.errors import InputError

from .conftest import build_deb

DATE = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
INDEXES = [
    "dists/stable/Release",
    "dists/stable/main/binary-amd64/Packages",
    "dists/stable/main/binary-amd64/Packages.gz",
    "dists/stable/main/binary-amd64/Packages.xz",
    "dists/stable/main/binary-all/Packages.gz",
]


def test_publishing_twice_gives_identical_indexes(tmp_path, debs, key):
    a = publish_repo(debs, tmp_path / "a", suite="stable", key=key, date=DATE)
    # other input order, same content: output must not depend on it
    b = publish_repo(list(reversed(debs)), tmp_path / "b", suite="stable", key=key, date=DATE)
    assert a.packages == b.packages
    for rel in INDEXES:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    publish_repo(debs, tmp_path / "c", suite="stable", key=key, date=DATE + timedelta(days=1))
    release_a = (tmp_path / "a/dists/stable/Release").read_text().splitlines()
    release_c = (tmp_path / "c/dists/stable/Release").read_text().splitlines()
    dated = ("Date:", "Valid-Until:")
    assert [ln for ln in release_a if not ln.startswith(dated)] == [
        ln for ln in release_c if not ln.startswith(dated)
    ]
    assert "Date: Thu, 01 Jan 2026 12:30:00 UTC" in release_a


def test_layout_and_indexes(tmp_path, debs, key):
    info = publish_repo(
        debs, tmp_path / "r", suite="stable", key=key, date=DATE, valid_for=timedelta(days=7)
    )
    root = tmp_path / "r"
    assert [e.filename for e in info.packages] == [
        "pool/main/a/alpha/alpha_1.0-1_amd64.deb",
        "pool/main/b/beta/beta_2.0-1_all.deb",
        "pool/main/libg/libgamma1/libgamma1_0.1_amd64.deb",
    ]
    amd64 = root / "dists/stable/main/binary-amd64"
    text = (amd64 / "Packages").read_text()
    assert gzip.decompress((amd64 / "Packages.gz").read_bytes()).decode() == text
    assert lzma.decompress((amd64 / "Packages.xz").read_bytes()).decode() == text
    paragraphs = parse_paragraphs(text)
    # arch:all packages are listed for every architecture, as in Debian
    assert [p["Package"] for p in paragraphs] == ["alpha", "beta", "libgamma1"]
    assert paragraphs[0]["Depends"] == "beta (= 2:2.0-1)"
    assert paragraphs[0]["Description"].endswith("\n exercises the repository publisher")
    all_index = parse_paragraphs((root / "dists/stable/main/binary-all/Packages").read_text())
    assert [p["Package"] for p in all_index] == ["beta"]
    release = parse_paragraphs((root / "dists/stable/Release").read_text())[0]
    assert release["Valid-Until"] == "Thu, 08 Jan 2026 12:30:00 UTC"
    assert release["Architectures"] == "amd64 all" and release["Components"] == "main"
    assert "main/binary-amd64/Packages" in release["SHA256"]
    assert "main/binary-amd64/Packages" in release["MD5Sum"]
    assert (root / "dists/stable/InRelease").read_text().startswith("-----BEGIN PGP SIGNED MESSAGE")
    assert (root / "dists/stable/Release.gpg").read_text().startswith("-----BEGIN PGP SIGNATURE")
    assert oct((root / "pool/main/a/alpha/alpha_1.0-1_amd64.deb").stat().st_mode & 0o777) == "0o644"


def test_expired_repository_is_reported(tmp_path, debs, key, keyring):
    publish_repo(
        debs, tmp_path / "r", suite="stable", key=key, date=DATE, valid_for=timedelta(days=1)
    )
    assert verify_repo(tmp_path / "r", keyring, now=DATE + timedelta(hours=1)) == []
    problems = verify_repo(tmp_path / "r", keyring, now=DATE + timedelta(days=2))
    assert [p.message for p in problems] == ["expired: Valid-Until Fri, 02 Jan 2026 12:30:00 UTC"]


def test_duplicate_with_different_content_names_both_files(tmp_path, debs, key):
    clash = build_deb(tmp_path, "libgamma1", "0.1", "amd64", payload="different bytes\n")
    with pytest.raises(DuplicatePackageError) as err:
        publish_repo([*debs, clash], tmp_path / "r", suite="stable", key=key, date=DATE)
    assert err.value.first == debs[2] and err.value.second == clash
    assert str(debs[2]) in str(err.value) and str(clash) in str(err.value)
    assert not (tmp_path / "r").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".r")] == []


def test_same_file_twice_is_fine(tmp_path, debs, key):
    info = publish_repo([*debs, debs[0]], tmp_path / "r", suite="stable", key=key, date=DATE)
    assert len(info.packages) == 3


def test_republish_replaces_atomically_and_leaves_nothing_behind(tmp_path, debs, key, keyring):
    out = tmp_path / "r"
    publish_repo(debs[:1], out, suite="stable", key=key, date=DATE)
    assert (out / "pool/main/a/alpha").is_dir()
    publish_repo(debs[1:], out, suite="stable", key=key, date=DATE)
    assert not (out / "pool/main/a").exists()  # the old tree is gone, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert verify_repo(out, keyring, now=DATE) == []


def test_failed_publish_keeps_previous_repository(tmp_path, debs, key, keyring):
    out = tmp_path / "r"
    publish_repo(debs, out, suite="stable", key=key, date=DATE)
    before = (out / "dists/stable/InRelease").read_bytes()
    bad = tmp_path / "broken.deb"
    bad.write_bytes(b"!<arch>\nnot really a deb\n")
    with pytest.raises(BadPackage) as err:
        publish_repo([*debs, bad], out, suite="stable", key=key, date=DATE)
    assert err.value.problems[0].location.file == str(bad)
    assert (out / "dists/stable/InRelease").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.deb", "r"]


def test_refuses_to_replace_a_folder_that_is_not_a_repository(tmp_path, debs, key):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an apt repository"):
        publish_repo(debs, precious, suite="stable", key=key)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_architecture_not_in_repository_is_bad_input(tmp_path, key):
    arm = build_deb(tmp_path, "delta", "1", "arm64")
    with pytest.raises(BadPackage, match="architecture arm64 is not one of"):
        publish_repo([arm], tmp_path / "r", suite="stable", key=key)


@pytest.mark.parametrize("suite", ["../up", "", "a b"])
def test_bad_suite_is_bad_input(tmp_path, debs, key, suite):
    with pytest.raises(InputError, match="invalid suite"):
        publish_repo(debs, tmp_path / "r", suite=suite, key=key)


def test_components_by_mapping(tmp_path, debs, key, keyring):
    info = publish_repo(
        {"main": debs[:2], "extra": debs[2:]},
        tmp_path / "r",
        suite="stable",
        components=("main", "extra"),
        key=key,
        date=DATE,
    )
    assert {e.package: e.component for e in info.packages} == {
        "alpha": "main",
        "beta": "main",
        "libgamma1": "extra",
    }
    assert (tmp_path / "r/pool/extra/libg/libgamma1/libgamma1_0.1_amd64.deb").is_file()
    assert verify_repo(tmp_path / "r", keyring, now=DATE) == []


def test_verify_reports_unlisted_and_orphan_files(tmp_path, debs, key, keyring):
    root = tmp_path / "r"
    publish_repo(debs, root, suite="stable", key=key, date=DATE)
    (root / "dists/stable/main/binary-amd64/Packages.bz2").write_bytes(b"sneaky")
    (root / "pool/main/x.deb").write_bytes(b"orphan")
    problems = {
        (Path(p.location.file).name, p.severity) for p in verify_repo(root, keyring, now=DATE)
    }
    assert problems == {("Packages.bz2", "error"), ("x.deb", "warning")}


def test_verify_reports_a_renamed_suite_folder(tmp_path, debs, key, keyring):
    root = tmp_path / "r"
    publish_repo(debs, root, suite="stable", key=key, date=DATE)
    (root / "dists/stable").rename(root / "dists/testing")
    problems = [p.message for p in verify_repo(root, keyring, now=DATE)]
    assert problems == ["Suite/Codename in Release do not name 'testing'"]
