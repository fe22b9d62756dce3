"""A model directory is untrusted input (issue #13, items 1, 14 and 19): symlinks out of
the tree, special files, traversing ref names and trailing newlines are refused, naming
each offender, before anything is copied; what is imported is readable by the
unprivileged server whatever the importer's umask. Real files, FIFOs, symlinks, and the
real `gpuprov mirror add-model` where a hang is what is being ruled out."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuprov.errors import InputError
from gpuprov.mirror.store import add_model, list_repos, read_refs

GPUPROV = [sys.executable, "-c", "from gpuprov.cli import main; main()"]
SECRET = b"root-only secret that must never be served\n"


@pytest.fixture
def src(tmp_path) -> Path:
    d = tmp_path / "model"
    (d / "docs").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "bert"}\n')
    (d / "docs" / "README.md").write_text("read me\n")
    return d


def add_model_cli(src: Path, store: Path, *extra: str) -> subprocess.CompletedProcess:
    # A subprocess with a timeout: before the fix a FIFO hung the import forever.
    return subprocess.run(
        [*GPUPROV, "mirror", "add-model", str(src), "--store", str(store), "--repo", "acme/m"]
        + list(extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored_bytes(store: Path) -> list[bytes]:
    return [p.read_bytes() for p in (store / "blobs").rglob("*") if p.is_file()]


# ---- item 1: symlinks and special files ----------------------------------------------------
def test_symlink_out_of_the_tree_is_refused_and_nothing_copied(src, tmp_path):
    secret = tmp_path / "secret.key"
    secret.write_bytes(SECRET)
    os.symlink(secret, src / "tokenizer.json")
    os.symlink("../../secret.key", src / "docs" / "relative.txt")
    store = tmp_path / "store"
    with pytest.raises(InputError) as err:
        add_model(src, store, "acme/m")
    text = str(err.value)
    assert "tokenizer.json" in text and "docs/relative.txt" in text, text
    assert "leaves the source tree" in text
    assert SECRET not in stored_bytes(store) if store.exists() else True
    assert not store.exists() or list_repos(store) == []


def test_fifo_device_and_socket_are_refused_without_hanging(src, tmp_path):
    import socket

    os.mkfifo(src / "weights.bin")
    os.symlink("/dev/zero", src / "zeros.safetensors")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "docs" / "agent.sock"))
    store = tmp_path / "store"
    try:
        proc = add_model_cli(src, store)
    finally:
        sock.close()
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr
    assert "weights.bin" in err and "FIFO" in err, err
    assert "zeros.safetensors" in err and "leaves the source tree" in err, err
    assert "agent.sock" in err and "socket" in err, err
    assert not (store / "repos").exists() or list_repos(store) == []


def test_symlink_to_a_directory_inside_the_tree_is_refused(src, tmp_path):
    os.symlink("docs", src / "docs-link")
    with pytest.raises(InputError, match="docs-link.*a directory, not a file"):
        add_model(src, tmp_path / "store", "acme/m")


def test_symlink_to_a_file_inside_the_tree_is_imported(src, tmp_path):
    os.symlink("docs/README.md", src / "README.md")
    info = add_model(src, tmp_path / "store", "acme/m")
    files = {f.path: f for f in info.files}
    assert files["README.md"].sha256 == files["docs/README.md"].sha256


def test_hf_cache_ref_cannot_name_a_path_outside_snapshots(tmp_path):
    # A copied cache whose refs/main says ../../elsewhere: followed, it imported any dir.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "id_rsa").write_bytes(SECRET)
    cache = tmp_path / "models--acme--m"
    (cache / "refs").mkdir(parents=True)
    (cache / "snapshots").mkdir()
    (cache / "refs" / "main").write_text("../../elsewhere")
    with pytest.raises(InputError, match="expected a commit sha"):
        add_model(cache, tmp_path / "store", "acme/m")
    for revision in ("../../elsewhere", "a/../../../elsewhere"):
        with pytest.raises(InputError, match="invalid revision"):
            add_model(cache, tmp_path / "store", "acme/m", revision)
    assert not (tmp_path / "store").exists()


# ---- item 19: trailing newlines --------------------------------------------------------------
@pytest.mark.parametrize(
    ("repo", "revision"),
    [
        ("acme/m\n", None),
        ("acme/m", "main\n"),
        ("acme/m", "refs/tags/v1\n"),
        ("acme/m", "0" * 40 + "\n"),
    ],
)
def test_trailing_newline_in_repo_or_revision_is_refused(src, tmp_path, repo, revision):
    store = tmp_path / "store"
    with pytest.raises(InputError, match="expected ORG/NAME|invalid revision"):
        add_model(src, store, repo, revision)
    assert not store.exists()


# ---- item 14: readable by the unprivileged server whatever the umask ------------------------
def test_store_written_under_umask_077_is_world_readable(src, tmp_path):
    store = tmp_path / "store"
    old = os.umask(0o077)
    try:
        info = add_model(src, store, "acme/m")
        add_model(src, store, "acme/m", revision="refs/tags/v1")
    finally:
        os.umask(old)
    assert read_refs(store, "acme/m")["tags"] == {"v1": info.sha}
    for path in [store, *store.rglob("*")]:
        if path == store / "tmp" or store / "tmp" in path.parents:
            continue  # staging stays private: the server never reads it
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o755, f"{path}: {oct(mode)}"
        else:
            assert mode & 0o444 == 0o444 and not mode & 0o022, f"{path}: {oct(mode)}"
    manifest = store / "repos/models/acme/m/commits" / info.sha / "manifest.json"
    assert json.loads(manifest.read_text())["sha"] == info.sha


# ---- item 1 as a property: whatever the tree, nothing from outside it is stored ------------
KINDS = st.sampled_from(["file", "link-in", "link-out", "link-abs", "fifo", "link-dir", "dangling"])


@settings(max_examples=40, deadline=None)
@given(entries=st.lists(KINDS, min_size=1, max_size=6))
def test_any_tree_imports_only_regular_files_from_inside_it(entries):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "outside.key").write_bytes(SECRET)
        src = base / "model"
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "real.bin").write_bytes(b"inside the tree\n")
        bad = set()
        for i, kind in enumerate(entries):
            path = src / f"e{i}"
            if kind == "file":
                path.write_bytes(b"file %d\n" % i)
            elif kind == "link-in":
                os.symlink("sub/real.bin", path)
            elif kind == "link-out":
                os.symlink("../outside.key", path)
            elif kind == "link-abs":
                os.symlink(base / "outside.key", path)
            elif kind == "fifo":
                os.mkfifo(path)
            elif kind == "link-dir":
                os.symlink("sub", path)
            else:
                os.symlink("missing", path)
            if kind not in ("file", "link-in"):
                bad.add(f"e{i}")
        store = base / "store"
        try:
            info = add_model(src, store, "acme/m")
        except InputError as exc:
            named = {p.location.file.rsplit("/", 1)[-1] for p in exc.problems}
            assert bad and named == bad, (entries, str(exc))
        else:
            assert not bad, entries
            want = {f"e{i}" for i, k in enumerate(entries)} | {"sub/real.bin"}
            assert {f.path for f in info.files} == want
        assert SECRET not in stored_bytes(store) if store.exists() else True
