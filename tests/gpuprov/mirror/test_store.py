"""The store: layout, git/LFS ids, deterministic and upstream shas, atomic imports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import snapshot_download

from gpuprov.errors import InputError
from gpuprov.mirror.store import add_model, blob_path, list_repos, read_refs, repo_dir


def git_hash(data: bytes) -> str:
    return (
        subprocess.run(
            ["git", "hash-object", "--stdin"], input=data, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )


@pytest.fixture
def src(tmp_path) -> Path:
    d = tmp_path / "src"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "bert"}\n')
    (d / "sub" / "notes.md").write_text("hello\n")
    (d / "weights.safetensors").write_bytes(os.urandom(4096))
    (d / "big.txt").write_bytes(b"x" * (10 * 1024 * 1024))  # LFS by size alone
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return d


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git for reference hashes")
def test_layout_and_ids_match_git_and_lfs(src, tmp_path):
    store = tmp_path / "store"
    info = add_model(src, store, "acme/m")
    files = {f.path: f for f in info.files}
    assert sorted(files) == ["big.txt", "config.json", "sub/notes.md", "weights.safetensors"]
    cfg = files["config.json"]
    assert not cfg.lfs and cfg.oid == git_hash((src / "config.json").read_bytes()) == cfg.etag
    for name in ("weights.safetensors", "big.txt"):
        f = files[name]
        pointer = (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{f.sha256}\nsize {f.size}\n"
        )
        assert f.lfs and f.etag == f.sha256 and f.pointer_size == len(pointer)
        assert f.oid == git_hash(pointer.encode())
    for f in info.files:
        assert blob_path(store, f.sha256).read_bytes() == (src / f.path).read_bytes()
    manifest = json.loads(
        (repo_dir(store, "acme/m", "model") / "commits" / info.sha / "manifest.json").read_text()
    )
    assert manifest["sha"] == info.sha and len(manifest["files"]) == 4
    assert read_refs(store, "acme/m") == {"branches": {"main": info.sha}, "tags": {}}


def test_sha_is_deterministic_and_follows_content(src, tmp_path):
    a = add_model(src, tmp_path / "s1", "acme/m")
    b = add_model(src, tmp_path / "s2", "acme/m")
    assert a.sha == b.sha and len(a.sha) == 40
    (src / "config.json").write_text('{"model_type": "gpt2"}\n')
    c = add_model(src, tmp_path / "s1", "acme/m", revision="refs/tags/v2")
    assert c.sha != a.sha
    assert read_refs(tmp_path / "s1", "acme/m") == {
        "branches": {"main": a.sha},
        "tags": {"v2": c.sha},
    }


def test_hf_cache_snapshot_keeps_upstream_sha_and_lfs(mirror, tmp_path):
    cache = tmp_path / "cache"
    snap = Path(
        snapshot_download("acme/tiny-bert", endpoint=mirror.url, cache_dir=cache, token=False)
    )
    store = tmp_path / "store"
    info = add_model(snap, store, "copy/tiny-bert")
    assert info.sha == mirror.shas["model"] and info.refs == ("main",) and info.source == "hf-cache"
    # The cache repo dir works too, resolved through refs/main.
    again = add_model(cache / "models--acme--tiny-bert", store, "copy/tiny-bert2")
    assert again.sha == info.sha
    original = next(r for r in list_repos(mirror.store) if r.repo == "acme/tiny-bert")
    assert sorted((f.path, f.oid, f.lfs, f.etag) for f in info.files) == sorted(
        (f.path, f.oid, f.lfs, f.etag) for f in original.files
    )


def test_corrupt_hf_cache_blob_is_refused(mirror, tmp_path):
    cache = tmp_path / "cache"
    snap = Path(
        snapshot_download(
            "acme/tiny-bert",
            allow_patterns=["config.json"],
            endpoint=mirror.url,
            cache_dir=cache,
            token=False,
        )
    )
    blob = (snap / "config.json").resolve()
    blob.write_text('{"tampered": true}\n')
    with pytest.raises(InputError, match="does not match"):
        add_model(snap, tmp_path / "store", "copy/m")
    assert list_repos(tmp_path / "store") == []


def test_failed_import_leaves_nothing_visible(src, tmp_path):
    store = tmp_path / "store"
    first = add_model(src, store, "acme/m")
    (src / "config.json").write_text('{"model_type": "changed"}\n')
    os.symlink(src / "missing-target", src / "zz-dangling.bin")
    with pytest.raises(InputError, match="zz-dangling.bin.*cannot read"):
        add_model(src, store, "acme/m")
    assert [(r.repo, r.sha) for r in list_repos(store)] == [("acme/m", first.sha)]
    assert os.listdir(repo_dir(store, "acme/m", "model") / "commits") == [first.sha]
    assert list((store / "tmp").iterdir()) == []


def test_killed_import_leaves_nothing_visible(src, tmp_path):
    store = tmp_path / "store"
    first = add_model(src, store, "acme/m")
    (src / "config.json").write_text('{"model_type": "changed"}\n')
    (src / "zz-blocks.bin").write_bytes(b"last")
    # The child stalls opening the last file, after its staging blob exists: the moment
    # a kill hurts most. (A FIFO did this once; the import now refuses FIFOs up front.)
    code = (
        "import sys, time; from pathlib import Path; import gpuprov.mirror.store as s\n"
        "real = s._open_regular\n"
        "def stall(path):\n"
        "    if path.name == 'zz-blocks.bin': time.sleep(600)\n"
        "    return real(path)\n"
        "s._open_regular = stall\n"
        "s.add_model(Path(sys.argv[1]), Path(sys.argv[2]), 'acme/m')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(src), str(store)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any((store / "tmp").glob("blob-*")):
            assert proc.poll() is None, "import ended early"
            time.sleep(0.01)
        assert any((store / "tmp").glob("blob-*")), "import never reached the fifo"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    repos = list_repos(store)
    assert [(r.repo, r.sha) for r in repos] == [("acme/m", first.sha)]
    assert os.listdir(repo_dir(store, "acme/m", "model") / "commits") == [first.sha]
    (src / "zz-blocks.bin").unlink()
    assert add_model(src, store, "acme/m").sha != first.sha


@pytest.mark.parametrize(
    ("repo", "revision", "message"),
    [
        ("noslash", None, "expected ORG/NAME"),
        ("a/b/c", None, "expected ORG/NAME"),
        ("../etc", None, "expected ORG/NAME"),
        ("acme/m", "bad name!", "invalid revision"),
        ("acme/m", "0" * 40, "commit sha can only be given"),
    ],
)
def test_bad_input_is_a_located_input_error(src, tmp_path, repo, revision, message):
    with pytest.raises(InputError, match=message):
        add_model(src, tmp_path / "store", repo, revision)


def test_missing_or_empty_source(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        add_model(tmp_path / "nope", tmp_path / "store", "acme/m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no files"):
        add_model(tmp_path / "empty", tmp_path / "store", "acme/m")


def test_list_repos_covers_types(mirror):
    repos = {(r.repo_type, r.repo): r for r in list_repos(mirror.store)}
    assert set(repos) == {
        ("model", "acme/tiny-bert"),
        ("model", "acme/gated-bert"),
        ("dataset", "acme/tiny-data"),
    }
    assert repos[("model", "acme/tiny-bert")].sha == mirror.shas["model"]
