"""layout.py: the manifest format, strict parsing, scanning, signing, differentials."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from gpuprov.bundle import layout
from gpuprov.errors import InputError

from .conftest import sample_files


def _messages(exc: pytest.ExceptionInfo) -> str:
    return "\n".join(str(p) for p in exc.value.problems)


def test_round_trip_and_id_is_canonical(make_bundle):
    root = make_bundle()
    manifest = layout.load_manifest(root)
    assert manifest.format == layout.FORMAT and manifest.base is None
    files = sample_files()
    by_path = manifest.by_path()
    assert set(by_path) == {*files, layout.PUBLIC_KEY}
    for rel, data in files.items():
        assert by_path[rel].size == len(data)
        assert by_path[rel].sha256 == hashlib.sha256(data).hexdigest()
    assert by_path["oci/oci-layout"].kind == "oci"
    assert by_path["models/empty.txt"].kind == "model"
    assert by_path[layout.PUBLIC_KEY].kind == "key"
    assert (root / layout.PUBLIC_KEY).read_bytes().startswith(b"-----BEGIN PGP PUBLIC KEY")
    again = layout.Manifest.from_json(manifest.to_json())
    assert again == manifest
    # the id depends on the file list only, not on its order or the creation time
    shuffled = layout.Manifest(
        layout.FORMAT, manifest.id, "2030-01-01T00:00:00Z", None, tuple(reversed(manifest.files))
    )
    assert layout.bundle_id(shuffled.files) == manifest.id
    assert not any(p.name.endswith(".tmp") for p in root.rglob("*"))


def _doc(**changes) -> str:
    entry = {"path": "apt/x.deb", "size": 3, "sha256": "0" * 64, "kind": "apt"}
    files = changes.pop("files", [entry])
    doc = {"format": layout.FORMAT, "id": "", "created": "2026-11-29T01:00:00Z", "base": None}
    doc["files"] = files
    try:
        doc["id"] = layout.bundle_id(layout.FileEntry(**f) for f in files)
    except TypeError:
        doc["id"] = "0" * 64
    doc.update(changes)
    return json.dumps(doc)


def test_valid_minimal_document_parses():
    assert layout.Manifest.from_json(_doc()).files[0].path == "apt/x.deb"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/etc/passwd", "not a relative path"),
        ("apt/../../etc/passwd", "'..'"),
        ("apt/./x", "'.'"),
        ("apt//x", "not a relative path"),
        ("apt/x\n", "not a relative path"),
        ("apt\\x", "not a relative path"),
        ("manifest.json", "must not be listed"),
        ("elsewhere/x", "is under elsewhere/"),
    ],
)
def test_bad_paths_are_refused_by_name(path, expected):
    entry = {"path": path, "size": 1, "sha256": "0" * 64, "kind": "apt"}
    with pytest.raises(InputError) as exc:
        layout.Manifest.from_json(_doc(files=[entry]))
    assert expected in _messages(exc)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("size", -1, "size must be an integer >= 0"),
        ("size", True, "size must be an integer >= 0"),
        ("size", "3", "size must be an integer >= 0"),
        ("sha256", "A" * 64, "sha256 must be 64 lowercase hex"),
        ("sha256", "0" * 63, "sha256 must be 64 lowercase hex"),
        ("kind", "exe", "kind 'exe' is not one of"),
        ("kind", "oci", "holds kind 'apt', not 'oci'"),
    ],
)
def test_bad_entries_are_refused(field, value, expected):
    entry = {"path": "apt/x.deb", "size": 3, "sha256": "0" * 64, "kind": "apt", field: value}
    with pytest.raises(InputError) as exc:
        layout.Manifest.from_json(_doc(files=[entry]))
    assert expected in _messages(exc)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"format": "gpuprov-bundle/2"}, "format is 'gpuprov-bundle/2'"),
        ({"id": "f" * 64}, "does not match the file list"),
        ({"base": "xyz"}, "base must be 64 lowercase hex"),
        ({"created": "yesterday"}, "created must be an ISO 8601 UTC time"),
        ({"created": "2026-11-29T01:00:00+02:00"}, "created must be an ISO 8601 UTC time"),
        ({"extra": 1}, "unknown keys: extra"),
    ],
)
def test_bad_documents_are_refused(changes, expected):
    with pytest.raises(InputError) as exc:
        layout.Manifest.from_json(_doc(**changes))
    assert expected in _messages(exc)


def test_duplicates_and_file_dir_clash_refused():
    a = {"path": "apt/x", "size": 1, "sha256": "0" * 64, "kind": "apt"}
    b = {"path": "apt/x/y", "size": 1, "sha256": "0" * 64, "kind": "apt"}
    with pytest.raises(InputError) as exc:
        layout.Manifest.from_json(_doc(files=[a, a, b]))
    text = _messages(exc)
    assert "apt/x is listed twice" in text
    assert "apt/x is listed as a file and as the directory of apt/x/y" in text


def test_not_json_and_missing_manifest(tmp_path):
    with pytest.raises(InputError, match="not valid JSON"):
        layout.Manifest.from_json(b"{nope")
    with pytest.raises(InputError, match="no manifest here"):
        layout.load_manifest(tmp_path)


def test_scan_refuses_symlinks_fifos_bad_names_and_stray_files(tmp_path):
    (tmp_path / "apt").mkdir()
    (tmp_path / "apt" / "ok.deb").write_bytes(b"x")
    (tmp_path / "apt" / "link").symlink_to("/etc/passwd")
    os.mkfifo(tmp_path / "apt" / "fifo")
    (tmp_path / "apt" / "sp ace").write_bytes(b"x")
    (tmp_path / "README").write_bytes(b"x")
    with pytest.raises(InputError) as exc:
        layout.scan_tree(tmp_path)
    text = _messages(exc)
    assert f"{tmp_path}/apt/link: error: symlink" in text
    assert f"{tmp_path}/apt/fifo: error: not a regular file" in text
    assert f"{tmp_path}/apt/sp ace: error: bad name" in text
    assert f"{tmp_path}/README: error: outside apt/" in text


def test_signature_good_and_fingerprint(make_bundle, site_key):
    root = make_bundle()
    assert layout.verify_signature(root, site_key.keyring) == site_key.key.fingerprint
    # an armored copy of the key works too (gpgv itself reads only binary keyrings)
    armored = root.parent / "armored.asc"
    armored.write_bytes((root / layout.PUBLIC_KEY).read_bytes())
    assert layout.verify_signature(root, armored) == site_key.key.fingerprint


def test_signature_by_another_key_refused(make_bundle, site_key, other_key):
    root = make_bundle(keys=other_key)
    with pytest.raises(layout.SignatureError, match="not in the keyring"):
        layout.verify_signature(root, site_key.keyring)


def test_changed_manifest_refused(make_bundle, site_key):
    root = make_bundle()
    text = (root / layout.MANIFEST).read_text()
    (root / layout.MANIFEST).write_text(text.replace('"size": 5000', '"size": 5001'))
    with pytest.raises(layout.SignatureError, match="bad signature"):
        layout.verify_signature(root, site_key.keyring)


def test_weak_digest_signature_refused(make_bundle, site_key):
    """A manifest signed with SHA1 (a real gpg signature) is refused, as apt refuses a
    SHA1-signed Release: the bundle and its apt repositories are judged alike."""
    root = make_bundle()
    subprocess.run(
        ["gpg", "--homedir", str(site_key.key.home), "--batch", "--yes", "--pinentry-mode",
         "loopback", "--local-user", f"{site_key.key.fingerprint}!", "--digest-algo", "SHA1",
         "--armor", "--detach-sign", "--output", str(root / layout.SIGNATURE),
         str(root / layout.MANIFEST)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with pytest.raises(layout.SignatureError, match="weak digest SHA1"):
        layout.verify_signature(root, site_key.keyring)


def test_missing_signature_refused(make_bundle, site_key):
    root = make_bundle()
    (root / layout.SIGNATURE).unlink()
    with pytest.raises(layout.SignatureError, match="missing"):
        layout.verify_signature(root, site_key.keyring)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("[GNUPG:] NEWSIG\n[GNUPG:] EXPKEYSIG ABCD someone\n", "expired key"),
        ("[GNUPG:] NEWSIG\n[GNUPG:] REVKEYSIG ABCD someone\n", "revoked key"),
        ("[GNUPG:] ERRSIG ABCD 22 10 00 1 9\n", "could not be checked"),
        ("[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG ABCD x\n", "without VALIDSIG"),
    ],
)
def test_gpgv_status_refusals(status, expected):
    with pytest.raises(layout.SignatureError, match=expected):
        layout.parse_gpgv_status(0, status)


def test_two_signatures_refused():
    # VALIDSIG <fpr> <date> <ts> <expire> <ver> <reserved> <pkalgo> <hashalgo> <class> <primary>
    validsig = "[GNUPG:] VALIDSIG " + "A" * 40 + " 2026-11-29 1 0 4 0 22 10 00 " + "B" * 40
    one = f"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG {'A' * 16} x\n{validsig}\n"
    with pytest.raises(layout.SignatureError, match="more than one"):
        layout.parse_gpgv_status(0, one + one)
    assert layout.parse_gpgv_status(0, one) == "B" * 40


def test_differential_carries_only_changes(make_bundle, tmp_path):
    base_root = make_bundle(name="base")
    base = layout.load_manifest(base_root)
    files = sample_files()
    files["wheels/gpuprov-0.1-py3-none-any.whl"] = b"new wheel"
    files["models/new/config.json"] = b"{}"
    del files["models/empty.txt"]
    diff_root = make_bundle(files, name="diff", base=base)
    diff = layout.load_manifest(diff_root)
    assert diff.base == base.id
    carried = {f.path for f in layout.carried_files(diff, base)}
    assert carried == {"wheels/gpuprov-0.1-py3-none-any.whl", "models/new/config.json"}
    on_disk = {str(p.relative_to(diff_root)) for p in diff_root.rglob("*") if p.is_file()}
    assert on_disk == carried | {layout.MANIFEST, layout.SIGNATURE}
    assert layout.missing_from_tree(diff, diff_root, base) == []
    (diff_root / "models/new/config.json").unlink()
    assert [f.path for f in layout.missing_from_tree(diff, diff_root, base)] == [
        "models/new/config.json"
    ]
    other = layout.Manifest(layout.FORMAT, "e" * 64, layout.now_utc(), None, ())
    with pytest.raises(InputError, match="applies to base"):
        layout.carried_files(diff, other)
    with pytest.raises(InputError, match="its base is needed"):
        layout.carried_files(diff, None)


def test_write_manifest_refuses_what_the_far_side_would(tmp_path: Path):
    bad = layout.FileEntry("apt/../x", 1, "0" * 64, "apt")
    with pytest.raises(InputError, match="'..'"):
        layout.write_manifest(tmp_path, [bad])
    assert not (tmp_path / layout.MANIFEST).exists()
