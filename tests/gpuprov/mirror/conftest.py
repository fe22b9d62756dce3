"""A store with sample repos and an in-process mirror server (on its own loop thread) on a
random loopback port, shared by the mirror tests."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpuprov.mirror.sample import build_tiny_bert, build_tiny_dataset
from gpuprov.mirror.server import Running, ServerConfig, start
from gpuprov.mirror.store import add_model

READER = "tok-reader-0123456789"  # may read acme/gated-*
OTHER = "tok-other-0123456789"  # valid, but only for other/*


@dataclass
class Mirror:
    url: str
    store: Path
    shas: dict[str, str]  # label -> commit sha
    model_dir: Path
    dataset_dir: Path
    reader_token: str = READER  # may read acme/gated-*
    other_token: str = OTHER  # valid, but only for other/*


class ThreadedServer:
    """Runs the real server on a private event loop thread; stop() tears it down."""

    def __init__(self, config: ServerConfig):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running: Running = asyncio.run_coroutine_threadsafe(start(config), self.loop).result(
            10
        )

    @property
    def url(self) -> str:
        return self.running.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def mirror_store(tmp_path_factory) -> Mirror:
    root = tmp_path_factory.mktemp("mirror")
    store = root / "store"
    model = build_tiny_bert(root / "src" / "tiny-bert", extra_weights_mb=12)
    (model / "onnx").mkdir()
    (model / "onnx" / "notes.txt").write_text("nested folder\n")
    dataset = build_tiny_dataset(root / "src" / "tiny-data", files=60)
    shas = {
        "model": add_model(model, store, "acme/tiny-bert").sha,
        "dataset": add_model(dataset, store, "acme/tiny-data", repo_type="dataset").sha,
        "gated": add_model(model, store, "acme/gated-bert").sha,
    }
    # A second commit on a branch with a slash and a tag, so revisions differ from main.
    v2 = root / "src" / "tiny-bert-v2"
    build_tiny_bert(v2)
    (v2 / "config.json").write_text(
        json.dumps({**json.loads((v2 / "config.json").read_text()), "hidden_act": "gelu_new"})
    )
    shas["v2"] = add_model(v2, store, "acme/tiny-bert", revision="release/v2").sha
    add_model(v2, store, "acme/tiny-bert", revision="refs/tags/v2.0")
    return Mirror("", store, shas, model, dataset)


@pytest.fixture(scope="session")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.yaml"
    path.write_text(
        f"tokens:\n  {READER}: [acme/gated-*]\n  {OTHER}: {{name: other, repos: ['other/*']}}\n"
        "gated: [acme/gated-*]\n"
    )
    path.chmod(0o600)  # a token file others can read is refused
    return path


@pytest.fixture(scope="session")
def mirror(mirror_store: Mirror, token_file: Path):
    server = ThreadedServer(ServerConfig(mirror_store.store, port=0, token_file=token_file))
    try:
        yield Mirror(
            server.url,
            mirror_store.store,
            mirror_store.shas,
            mirror_store.model_dir,
            mirror_store.dataset_dir,
        )
    finally:
        server.stop()


@pytest.fixture
def hf_cache(tmp_path) -> Path:
    return tmp_path / "hf-cache"


@pytest.fixture
def empty_mirror(tmp_path):
    """A running server over a store of its own, for tests that change the store."""
    store = tmp_path / "store"
    (store / "repos").mkdir(parents=True)
    server = ThreadedServer(ServerConfig(store, port=0))
    try:
        yield server.url, store
    finally:
        server.stop()
