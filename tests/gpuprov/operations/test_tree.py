"""The mirror host's sync planning and unit files, without a host: the remote listing
command agrees with the local listing (else every run would re-upload), uploads are
ordered metadata-last, and the units start what they claim on the inventory's ports."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request

from gpuprov.deploys.mirror_server import SERVICE_USER, MirrorHostPaths, apt_unit, models_unit

from gpuprov.inventory.model import MirrorRef
from gpuprov.mirror.store import add_model
from gpuprov.operations.tree import TreeListing, local_listing, plan_sync


def directives(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] not in "#"
    )


def test_remote_listing_matches_local_listing(tmp_path):
    src = tmp_path / "m"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(os.urandom(5000))
    store = tmp_path / "store"
    add_model(src, store, "acme/x")
    (store / "odd name with spaces.txt").write_text("ok")
    fact = TreeListing()
    cmd = fact.command(path=str(store), immutable="blobs/")
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True)
    remote = fact.process(out.stdout.splitlines())
    local = local_listing(store, ("blobs/",))
    assert remote == local
    assert all(meta[1] is None for rel, meta in local.items() if rel.startswith("blobs/"))
    assert local["odd name with spaces.txt"][1] is not None
    # A missing directory lists as empty: everything will be uploaded.
    cmd = fact.command(path=str(tmp_path / "absent"), immutable="")
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True)
    assert fact.process(out.stdout.splitlines()) == {}


def test_plan_sync_orders_metadata_last_and_deletes_extras():
    local = {
        "repos/models/a/b/refs.json": (10, "r2"),
        "repos/models/a/b/commits/s2/manifest.json": (20, "m2"),
        "blobs/sha256/ab/abcd": (5, None),
        "blobs/sha256/cd/cdef": (7, None),
    }
    remote = {
        "repos/models/a/b/refs.json": (10, "r1"),  # same size, other content
        "blobs/sha256/ab/abcd": (5, None),
        "blobs/sha256/ee/eeee": (3, None),
        "x.gpuprov-new": (1, "t"),  # an interrupted upload
    }
    upload, remove = plan_sync(local, remote, last=("refs.json",))
    assert upload == [
        "blobs/sha256/cd/cdef",
        "repos/models/a/b/commits/s2/manifest.json",
        "repos/models/a/b/refs.json",
    ]
    assert remove == ["blobs/sha256/ee/eeee", "x.gpuprov-new"]
    assert plan_sync(local, remote, delete=False)[1] == []
    assert plan_sync(local, dict(local)) == ([], [])


def test_models_unit_uses_inventory_port_and_service_user():
    unit = directives(
        models_unit(MirrorRef(host="m", models_port=9123), MirrorHostPaths(), "10.0.0.5")
    )
    assert unit["User"] == SERVICE_USER and unit["Group"] == SERVICE_USER
    assert unit["ExecStart"].split()[:3] == ["/opt/gpuprov/venv/bin/gpuprov", "mirror", "serve"]
    assert "--port 9123" in unit["ExecStart"] and "--host 10.0.0.5" in unit["ExecStart"]
    assert unit["ReadOnlyPaths"] == "/srv/gpuprov/models"
    assert unit["ProtectSystem"] == "strict" and unit["Restart"] == "on-failure"


def test_apt_unit_serves_the_directory(tmp_path):
    (tmp_path / "dists").mkdir()
    (tmp_path / "dists" / "InRelease").write_text("hello apt\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = apt_unit(
        MirrorRef(host="m", apt_port=port), MirrorHostPaths(apt=str(tmp_path)), "127.0.0.1"
    )
    unit = directives(text)
    assert unit["User"] == SERVICE_USER and unit["ReadOnlyPaths"] == str(tmp_path)
    assert unit["Restart"] == "on-failure" and unit["ProtectSystem"] == "strict"
    argv = shlex.split(unit["ExecStart"])
    assert argv[0] == "/opt/gpuprov/venv/bin/python"
    argv[0] = sys.executable  # this checkout's python stands in for the host's venv
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/dists/InRelease") as r:
                    assert r.read() == b"hello apt\n"
                break
            except OSError:
                assert time.monotonic() < deadline, "apt server did not answer"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert argv[1:3] == ["-m", "gpuprov.mirror.aptserve"]
