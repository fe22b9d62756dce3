"""bundle verify: each kind of damage is found and named, on a real FAT32 export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuprov.bundle import layout
from gpuprov.bundle import media as m
from gpuprov.bundle.export import export_bundle
from gpuprov.bundle.verify import verify_media
from gpuprov.errors import InputError

from .conftest import flip_byte, sample_files

CHUNK = 64 * 1024
BIG = "oci/blobs/sha256/" + "a" * 64


@pytest.fixture
def exported(make_bundle, fat32) -> Path:
    export_bundle(make_bundle(), fat32, chunk_size=CHUNK)
    return fat32


def rewrite(path: Path, text: str) -> None:
    path.unlink()  # fusefat refuses to truncate an existing file on open
    path.write_text(text)


def _found(media: Path, keyring: Path, **kw) -> list[str]:
    return [str(f) for f in verify_media(media, keyring, **kw).findings]


def test_clean_media_passes(exported, site_key):
    report = verify_media(exported, site_key.keyring)
    assert report.ok and report.signer == site_key.key.fingerprint
    assert (
        report.bytes_hashed
        == sum(len(d) for d in sample_files().values())
        + (exported / layout.PUBLIC_KEY).stat().st_size
    )


def test_flipped_byte_names_the_chunk(exported, site_key):
    flip_byte(exported / f"{BIG}.part0002")
    assert _found(exported, site_key.keyring) == [
        f"{BIG}.part0002: sha256 differs (chunk 3 of 5 of {BIG})"
    ]


def test_flipped_byte_in_unsplit_file(exported, site_key):
    deb = "apt/debian12/pool/main/b/beta_2.0-1_all.deb"
    flip_byte(exported / deb)
    [finding] = _found(exported, site_key.keyring)
    assert finding.startswith(f"{deb}: sha256 ") and "differs from the manifest's" in finding


def test_deleted_chunk(exported, site_key):
    (exported / f"{BIG}.part0004").unlink()
    assert _found(exported, site_key.keyring) == [f"{BIG}.part0004: missing chunk 5 of 5 of {BIG}"]


def test_truncated_chunk(exported, site_key):
    with open(exported / f"{BIG}.part0001", "r+b") as fh:
        fh.truncate(1000)
    assert _found(exported, site_key.keyring) == [
        f"{BIG}.part0001: short: 1000 bytes, expected {CHUNK} chunk 2 of 5 of {BIG}"
    ]


def test_added_file(exported, site_key):
    (exported / "apt" / "debian12" / "evil.deb").write_bytes(b"payload")
    assert _found(exported, site_key.keyring) == [
        "apt/debian12/evil.deb: unlisted file (not in the signed manifest)"
    ]


def test_bundle_signed_by_another_key(make_bundle, fat32, site_key, other_key):
    export_bundle(make_bundle(keys=other_key), fat32, chunk_size=CHUNK)
    [finding] = _found(fat32, site_key.keyring)
    assert finding.startswith("manifest.json.asc: manifest.json: signed by a key that is not in")
    assert other_key.key.fingerprint[-16:] in finding


def _resign_with(media: Path, keys, mutate) -> None:
    """Rewrite media's manifest by hand (as an attacker or a broken tool would) and sign
    it with keys: the names are then only caught by the manifest's own validation."""
    doc = json.loads((media / layout.MANIFEST).read_text())
    mutate(doc)
    doc["id"] = layout.bundle_id(layout.FileEntry(**f) for f in doc["files"])
    rewrite(media / layout.MANIFEST, json.dumps(doc))
    layout.sign_manifest(media, keys.key.home)


@pytest.mark.parametrize(
    ("bad", "why"),
    [("apt/../../etc/cron.d/x", "'..' components"), ("/etc/cron.d/x", "not a relative path")],
)
def test_dotdot_and_absolute_names_in_a_signed_manifest(exported, site_key, bad, why):
    def mutate(doc):
        doc["files"].append({"path": bad, "size": 1, "sha256": "0" * 64, "kind": "apt"})

    _resign_with(exported, site_key, mutate)
    findings = _found(exported, site_key.keyring)
    assert any(bad in f and why in f for f in findings), findings


def test_symlink_on_media(make_bundle, tmp_path, site_key):
    # FAT32 cannot hold a symlink; media formatted ext4 (or a copy on disk) can.
    media = tmp_path / "media"
    media.mkdir()
    export_bundle(make_bundle(), media)
    (media / "models" / "escape").symlink_to("/etc")
    target = media / "apt/debian12/pool/main/b/beta_2.0-1_all.deb"
    target.unlink()
    target.symlink_to(tmp_path / "bundle" / "apt/debian12/pool/main/b/beta_2.0-1_all.deb")
    found = _found(media, site_key.keyring)
    assert "models/escape: symlink (not allowed in a bundle)" in found
    assert "apt/debian12/pool/main/b/beta_2.0-1_all.deb: symlink (not allowed in a bundle)" in found
    assert "apt/debian12/pool/main/b/beta_2.0-1_all.deb: missing" in found


def test_tampered_media_index_is_reported(exported, site_key):
    index = json.loads((exported / m.MEDIA_INDEX).read_text())
    index["split"][BIG] = index["split"][BIG][:2]
    rewrite(exported / m.MEDIA_INDEX, json.dumps(index))
    assert f"media.json: split {BIG}: expected 5 chunk sha256 values" in _found(
        exported, site_key.keyring
    )


def test_bad_input(tmp_path, site_key):
    with pytest.raises(InputError, match="not a directory"):
        verify_media(tmp_path / "nope", site_key.keyring)
    with pytest.raises(InputError, match="keyring not found"):
        verify_media(tmp_path, tmp_path / "nope.gpg")


def test_differential_with_and_without_base(make_bundle, tmp_path, site_key):
    base_root = make_bundle(name="base")
    base = layout.load_manifest(base_root)
    files = sample_files()
    files["wheels/gpuprov-0.1-py3-none-any.whl"] = b"a new wheel"
    diff_root = make_bundle(files, name="diff", base=base)
    media = tmp_path / "media"
    media.mkdir()
    export_bundle(diff_root, media)
    report = verify_media(media, site_key.keyring)
    assert report.ok and report.not_carried == len(base.files) - 1
    assert verify_media(media, site_key.keyring, base=base).ok
    (media / "wheels/gpuprov-0.1-py3-none-any.whl").unlink()
    assert _found(media, site_key.keyring, base=base) == [
        "wheels/gpuprov-0.1-py3-none-any.whl: missing"
    ]
    other = layout.Manifest(layout.FORMAT, "e" * 64, layout.now_utc(), None, ())
    with pytest.raises(InputError, match="applies to base"):
        verify_media(media, site_key.keyring, base=other)
