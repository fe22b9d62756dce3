"""The real huggingface_hub client against the mirror (endpoint= on each call)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_hf_hub_download_matches_source_and_cache_layout(mirror, hf_cache):
    path = hf_hub_download(
        "acme/tiny-bert", "model.safetensors", endpoint=mirror.url, cache_dir=hf_cache, token=False
    )
    assert sha256(path) == sha256(mirror.model_dir / "model.safetensors")
    repo_cache = hf_cache / "models--acme--tiny-bert"
    # refs/main holds the sha with no trailing newline; the blob is named by the sha256.
    assert (repo_cache / "refs" / "main").read_text() == mirror.shas["model"]
    assert Path(path).resolve().name == sha256(mirror.model_dir / "model.safetensors")
    assert Path(path).parent.name == mirror.shas["model"]


def test_snapshot_download_whole_repo(mirror, hf_cache):
    snap = Path(
        snapshot_download("acme/tiny-bert", endpoint=mirror.url, cache_dir=hf_cache, token=False)
    )
    src = mirror.model_dir
    expected = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    got = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
    assert got == expected
    for rel in expected:
        assert sha256(snap / rel) == sha256(src / rel), rel


def test_snapshot_download_allow_patterns_and_pinned_sha(mirror, hf_cache):
    snap = Path(
        snapshot_download(
            "acme/tiny-bert",
            revision=mirror.shas["model"],
            allow_patterns=["*.json"],
            endpoint=mirror.url,
            cache_dir=hf_cache,
            token=False,
        )
    )
    assert snap.name == mirror.shas["model"]
    assert sorted(p.name for p in snap.iterdir()) == [
        "config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_branch_with_slash_and_tag_resolve_to_their_commit(mirror, hf_cache):
    for rev in ("release/v2", "v2.0"):
        path = hf_hub_download(
            "acme/tiny-bert",
            "config.json",
            revision=rev,
            endpoint=mirror.url,
            cache_dir=hf_cache,
            token=False,
        )
        assert Path(path).parent.name == mirror.shas["v2"]
        assert "gelu_new" in Path(path).read_text()
    assert (
        hf_cache / "models--acme--tiny-bert" / "refs" / "release" / "v2"
    ).read_text() == mirror.shas["v2"]


def test_model_info_and_file_listing(mirror):
    api = HfApi(endpoint=mirror.url, token=False)
    info = api.model_info("acme/tiny-bert")
    assert info.id == "acme/tiny-bert" and info.sha == mirror.shas["model"]
    assert info.private is False and info.gated is False
    sib = {s.rfilename: s for s in info.siblings}
    weights = sib["model.safetensors"]
    assert weights.lfs is not None and weights.lfs.sha256 == sha256(
        mirror.model_dir / "model.safetensors"
    )
    assert weights.size == (mirror.model_dir / "model.safetensors").stat().st_size
    assert sib["config.json"].lfs is None and len(sib["config.json"].blob_id) == 40
    files = api.list_repo_files("acme/tiny-bert")
    assert "onnx/notes.txt" in files and "onnx" not in files
    assert api.model_info("acme/tiny-bert", revision="release/v2").sha == mirror.shas["v2"]
    refs = api.list_repo_refs("acme/tiny-bert")
    assert {b.name: b.target_commit for b in refs.branches} == {
        "main": mirror.shas["model"],
        "release/v2": mirror.shas["v2"],
    }
    assert [t.name for t in refs.tags] == ["v2.0"]


def test_tree_pagination_follows_link_to_the_mirror(mirror):
    api = HfApi(endpoint=mirror.url, token=False)
    # expand=True pages by 50, like the Hub: 60 shards + folder need two pages.
    items = list(
        api.list_repo_tree("acme/tiny-data", repo_type="dataset", recursive=True, expand=True)
    )
    paths = [i.path for i in items]
    assert len(paths) == len(set(paths)) == 60 + 3  # shards, data/, README.md, train.csv
    assert all(i.last_commit.oid == mirror.shas["dataset"] for i in items)
    sub = list(api.list_repo_tree("acme/tiny-data", "data", repo_type="dataset"))
    assert len(sub) == 60 and all(i.path.startswith("data/") for i in sub)
    infos = api.get_paths_info(
        "acme/tiny-data", ["train.csv", "data", "missing.txt"], repo_type="dataset"
    )
    assert sorted(type(i).__name__ + ":" + i.path for i in infos) == [
        "RepoFile:train.csv",
        "RepoFolder:data",
    ]


def test_dataset_repo(mirror, hf_cache):
    path = hf_hub_download(
        "acme/tiny-data",
        "data/shard-007.jsonl",
        repo_type="dataset",
        endpoint=mirror.url,
        cache_dir=hf_cache,
        token=False,
    )
    assert Path(path).read_text() == (mirror.dataset_dir / "data" / "shard-007.jsonl").read_text()
    snap = snapshot_download(
        "acme/tiny-data",
        repo_type="dataset",
        allow_patterns=["*.csv"],
        endpoint=mirror.url,
        cache_dir=hf_cache / "2",
        token=False,
    )
    assert os.listdir(snap) == ["train.csv"]
    # A model of that name does not exist: types are separate namespaces.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=mirror.url, token=False).model_info("acme/tiny-data")


def test_unknown_repo_revision_and_file_raise_the_client_exceptions(mirror, hf_cache):
    kw = {"endpoint": mirror.url, "cache_dir": hf_cache, "token": False}
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/nope", "config.json", **kw)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("acme/tiny-bert", "config.json", revision="no-such-branch", **kw)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("acme/tiny-bert", "config.json", revision="0" * 40, **kw)
    with pytest.raises(RemoteEntryNotFoundError) as err:
        hf_hub_download("acme/tiny-bert", "generation_config.json", **kw)
    assert isinstance(err.value, EntryNotFoundError)
    # The client records the absence under the commit sha the mirror sent.
    assert (
        hf_cache
        / "models--acme--tiny-bert"
        / ".no_exist"
        / mirror.shas["model"]
        / "generation_config.json"
    ).exists()
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("acme/nope", **kw)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("acme/tiny-bert", revision="nope", **kw)


def test_gated_repo_needs_a_token_that_allows_it(mirror, hf_cache):
    kw = {"endpoint": mirror.url, "cache_dir": hf_cache}
    with pytest.raises(GatedRepoError) as err:
        hf_hub_download("acme/gated-bert", "config.json", token=False, **kw)
    assert err.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as err:
        hf_hub_download("acme/gated-bert", "config.json", token=mirror.other_token, **kw)
    assert err.value.response.status_code == 403
    with pytest.raises(GatedRepoError):
        HfApi(endpoint=mirror.url, token=False).model_info("acme/gated-bert")
    path = hf_hub_download("acme/gated-bert", "config.json", token=mirror.reader_token, **kw)
    assert Path(path).read_text() == (mirror.model_dir / "config.json").read_text()
    info = HfApi(endpoint=mirror.url, token=mirror.reader_token).model_info("acme/gated-bert")
    assert info.gated == "manual"
    # A wrong token is refused even for public repos; whoami names the token.
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=mirror.url, token="hf_not_a_known_token").model_info("acme/tiny-bert")
    assert err.value.response.status_code == 401
    assert HfApi(endpoint=mirror.url).whoami(token=mirror.other_token)["name"] == "other"


def test_32_concurrent_clients_all_get_correct_bytes(mirror, tmp_path):
    expected = {
        name: sha256(mirror.model_dir / name)
        for name in ("extra.safetensors", "model.safetensors", "config.json")
    }

    def client(i: int) -> dict[str, str]:
        snap = snapshot_download(
            "acme/tiny-bert",
            allow_patterns=list(expected),
            endpoint=mirror.url,
            cache_dir=tmp_path / f"c{i}",
            token=False,
            max_workers=2,
        )
        return {name: sha256(Path(snap) / name) for name in expected}

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(client, range(32)))
    assert all(r == expected for r in results)


def test_commits_and_repo_listing(mirror):
    api = HfApi(endpoint=mirror.url, token=False)
    commits = api.list_repo_commits("acme/tiny-bert", revision="v2.0")
    assert [c.commit_id for c in commits] == [mirror.shas["v2"]]
    assert sorted(m.id for m in api.list_models()) == ["acme/gated-bert", "acme/tiny-bert"]
    assert [d.id for d in api.list_datasets()] == ["acme/tiny-data"]


def test_imports_are_served_without_a_restart(empty_mirror, tmp_path):
    from gpuprov.mirror.sample import build_tiny_dataset
    from gpuprov.mirror.store import add_model

    url, store = empty_mirror
    api = HfApi(endpoint=url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("late/m")
    src = build_tiny_dataset(tmp_path / "src", files=1)
    first = add_model(src, store, "late/m").sha
    assert api.model_info("late/m").sha == first
    (src / "train.csv").write_text("text,label\nchanged,1\n")
    second = add_model(src, store, "late/m").sha
    assert api.model_info("late/m").sha == second != first
    assert api.model_info("late/m", revision=first).sha == first  # old commits stay reachable


def test_missing_blob_is_a_coded_500(empty_mirror, tmp_path):
    from gpuprov.mirror.sample import build_tiny_dataset
    from gpuprov.mirror.store import add_model, blob_path

    url, store = empty_mirror
    info = add_model(build_tiny_dataset(tmp_path / "src", files=1), store, "acme/broken")
    csv = next(f for f in info.files if f.path == "train.csv")
    blob_path(store, csv.sha256).unlink()
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    with pytest.raises(HfHubHTTPError) as err:
        get_hf_file_metadata(hf_hub_url("acme/broken", "train.csv", endpoint=url), token=False)
    assert err.value.response.status_code == 500
    assert err.value.response.headers["X-Error-Code"] == "BlobMissing"
