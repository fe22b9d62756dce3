"""mirror_content over real SSH to a light host: a store and an apt repo arrive byte for
byte, a second run changes nothing, a changed or removed file is followed, and the
metadata that points at content (refs.json, InRelease) is written after that content."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gpuprov.deploys.mirror_content import mirror_content  # noqa: E402
from gpuprov.deploys.mirror_server import MirrorHostPaths  # noqa: E402
from mirror_harness import apply, cluster_of  # noqa: E402

from gpuprov.mirror.store import add_model  # noqa: E402

pytestmark = pytest.mark.host

if os.geteuid() != 0:
    pytest.skip("light hosts need root", allow_module_level=True)


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def lab():
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(1, names=["mirror01"]) as lab:
        yield lab


def test_sync_store_and_apt_repo(lab, tmp_path):
    host = lab.hosts[0]
    cluster = cluster_of(lab.write_inventory(tmp_path / "inventory.yaml"))
    remote_root = Path(host.root_dir)  # the host's file system, seen from here
    paths = MirrorHostPaths(store="/srv/m/models", apt="/srv/m/apt")

    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text('{"a": 1}')
    (src / "weights.bin").write_bytes(os.urandom(100_000))
    store = tmp_path / "store"
    add_model(src, store, "acme/m")
    (store / "tmp").mkdir(exist_ok=True)
    (store / "tmp" / "half-import").write_text("never shipped")
    apt = tmp_path / "apt"
    (apt / "bookworm" / "pool" / "main" / "a").mkdir(parents=True)
    (apt / "bookworm" / "pool" / "main" / "a" / "a_1_all.deb").write_bytes(b"deb" * 1000)
    (apt / "bookworm" / "dists" / "bookworm").mkdir(parents=True)
    (apt / "bookworm" / "dists" / "bookworm" / "InRelease").write_text("signed\n")

    first = apply(
        cluster, host.name, (mirror_content, {"store": store, "apt_repos": apt, "paths": paths})
    )
    assert first.changed == 2 and len(first.planned) == 2, first
    shipped = {k: v for k, v in tree(store).items() if not k.startswith("tmp/")}
    assert tree(remote_root / "srv/m/models") == shipped
    assert tree(remote_root / "srv/m/apt") == tree(apt)
    blob = next((remote_root / "srv/m/models/blobs").rglob("*"))
    assert blob.stat().st_uid == 0

    again = apply(
        cluster, host.name, (mirror_content, {"store": store, "apt_repos": apt, "paths": paths})
    )
    assert again.changed == 0 and again.planned == [], again

    # A new commit: new blob + manifest + refs.json; an apt file goes away.
    (src / "config.json").write_text('{"a": 2}')
    add_model(src, store, "acme/m")
    (apt / "bookworm" / "pool" / "main" / "a" / "a_1_all.deb").unlink()
    (remote_root / "srv/m/models/stray").write_text("x")
    third = apply(
        cluster, host.name, (mirror_content, {"store": store, "apt_repos": apt, "paths": paths})
    )
    assert third.changed == 2
    shipped = {k: v for k, v in tree(store).items() if not k.startswith("tmp/")}
    assert tree(remote_root / "srv/m/models") == shipped
    assert tree(remote_root / "srv/m/apt") == tree(apt)
    refs = json.loads((remote_root / "srv/m/models/repos/models/acme/m/refs.json").read_text())
    assert refs == json.loads((store / "repos/models/acme/m/refs.json").read_text())
