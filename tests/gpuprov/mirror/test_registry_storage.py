"""The registry storage written from a real OCI layout (tiny images made offline with
umoci, gathered into one layout by skopeo the way `gpuprov bundle build` does), served by
a real Debian `docker-registry` on loopback with the configuration the mirror host gets,
pulled back with skopeo: same manifest digests, blobs hard-linked, pushes refused; and
layouts that must not be served are refused with the place named, nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from registries import docker_registry

from gpuprov.mirror.registry_storage import (
    RegistryStorageError,
    repository_of,
    write_storage,
)
from gpuprov.rendering import render

for tool in ("skopeo", "umoci", "docker-registry"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (make system-deps)", allow_module_level=True)

REFS = ("nvcr.io/nvidia/tiny:1.0", "ubuntu:22.04", "127.0.0.1:5000/test/other:2")


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _image(work: Path, name: str, text: str) -> Path:
    img = work / name
    (work / f"{name}.txt").write_text(text)
    for args in (
        ["init", "--layout", str(img)],
        ["new", "--image", f"{img}:latest"],
        ["insert", "--image", f"{img}:latest", str(work / f"{name}.txt"), "/hello.txt"],
    ):
        subprocess.run(["umoci", *args], check=True, capture_output=True, timeout=60)
    return img


@pytest.fixture(scope="module")
def oci(tmp_path_factory) -> Path:
    """One OCI layout, three references (two of them the same image), as a bundle's oci/."""
    work = tmp_path_factory.mktemp("images")
    one = _image(work, "one", "hello from one\n")
    two = _image(work, "two", "hello from two\n")
    layout = work / "oci"
    for src, ref in ((one, REFS[0]), (one, REFS[1]), (two, REFS[2])):
        done = _run("skopeo", "copy", "--quiet", f"oci:{src}:latest", f"oci:{layout}:{ref}")
        assert done.returncode == 0, done.stderr
    return layout


def index_digests(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(oci, tmp_path_factory):
    """The storage, served read-only by docker-registry with the mirror host's config."""
    work = tmp_path_factory.mktemp("registry")
    storage = work / "storage"
    images = write_storage(oci, storage)
    port = free_port()
    config = work / "registry.yml"
    config.write_text(
        render(
            "gpuprov-registry.yml.j2",
            addr=f"127.0.0.1:{port}",
            rootdirectory=str(storage),
            tls_cert=None,
            tls_key=None,
        )
    )
    with docker_registry(config, port):
        yield {"url": f"127.0.0.1:{port}", "storage": storage, "images": images, "work": work}


def test_repository_names_are_what_a_registry_mirror_is_asked_for():
    assert repository_of("nvcr.io/nvidia/cuda:12.8.1-base") == ("nvidia/cuda", "12.8.1-base")
    assert repository_of("ubuntu:22.04") == ("library/ubuntu", "22.04")
    assert repository_of("docker.io/library/ubuntu") == ("library/ubuntu", "latest")
    assert repository_of("ghcr.io/acme/tool@sha256:" + "a" * 64) == ("acme/tool", None)
    assert repository_of("127.0.0.1:5000/test/tiny:1.0") == ("test/tiny", "1.0")
    for bad in ("Upper/case:1", "a/b:c:d", "../etc:1", "x; rm -rf /", ""):
        with pytest.raises(RegistryStorageError, match="not an image reference"):
            repository_of(bad)


def test_every_image_pulls_back_with_its_digest(oci, served):
    want = index_digests(oci)
    for ref, digest in want.items():
        repo, tag = repository_of(ref)
        raw = _run(
            "skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{served['url']}/{repo}:{tag}"
        )  # fmt: skip
        assert raw.returncode == 0, raw.stderr
        got = _run(
            "skopeo", "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{served['url']}/{repo}:{tag}", f"oci:{served['work']}/pulled:{repo}-{tag}",
        )  # fmt: skip
        assert got.returncode == 0, got.stderr
        pulled = index_digests(served["work"] / "pulled")[f"{repo}-{tag}"]
        assert pulled == digest, (ref, pulled, digest)
    catalog = json.load(urllib.request.urlopen(f"http://{served['url']}/v2/_catalog", timeout=10))
    assert sorted(catalog["repositories"]) == ["library/ubuntu", "nvidia/tiny", "test/other"]


def test_blobs_are_hard_links_not_copies(oci, served):
    blobs = served["storage"] / "docker/registry/v2/blobs/sha256"
    datas = sorted(blobs.glob("*/*/data"))
    assert datas
    for data in datas:
        src = oci / "blobs" / "sha256" / data.parent.name
        assert data.stat().st_ino == src.stat().st_ino, data


def test_push_is_refused(oci, served):
    url = served["url"]
    pushed = _run(
        "skopeo", "copy", "--quiet", "--dest-tls-verify=false",
        f"oci:{oci}:{REFS[2]}", f"docker://{url}/evil/image:1",
    )  # fmt: skip
    assert pushed.returncode != 0
    upload = urllib.request.Request(f"http://{url}/v2/evil/image/blobs/uploads/", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(upload, timeout=10)
    assert err.value.code == 405, err.value.read()
    assert not (served["storage"] / "docker/registry/v2/repositories/evil").exists()
    assert not (served["storage"] / "docker/registry/v2/repositories/_uploads").exists()


def _copy_layout(oci: Path, dest: Path) -> Path:
    shutil.copytree(oci, dest, symlinks=True)
    return dest


def _one_layer(layout: Path) -> Path:
    index = json.loads((layout / "index.json").read_text())
    top = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs/sha256" / top).read_text())
    return layout / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]


def test_a_symlinked_blob_is_refused_and_nothing_is_left(oci, tmp_path):
    layout = _copy_layout(oci, tmp_path / "oci")
    layer = _one_layer(layout)
    (tmp_path / "elsewhere").write_bytes(layer.read_bytes())
    layer.unlink()
    layer.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RegistryStorageError, match="not a regular file"):
        write_storage(layout, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "oci"]


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "has 3 bytes, its descriptor says"),
        ("missing", "is missing"),
        ("manifest", "does not match its digest"),
        ("refname", "not an image reference"),
        ("digest", "is not sha256:<64 hex>"),
    ],
)
def test_a_damaged_layout_is_refused_naming_where(oci, tmp_path, damage, message):
    layout = _copy_layout(oci, tmp_path / "oci")
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    if damage == "truncate":
        _one_layer(layout).write_bytes(b"abc")
    elif damage == "missing":
        _one_layer(layout).unlink()
    elif damage == "manifest":
        top = layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]
        text = top.read_text()
        top.unlink()
        top.write_text(text.replace('"layers"', '"layers" ', 1)[: len(text)])
    elif damage == "refname":
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "../x:1"
    elif damage == "digest":
        index["manifests"][0]["digest"] = "sha256:../../etc/passwd"
    index_path.write_text(json.dumps(index))
    with pytest.raises(RegistryStorageError, match=message):
        write_storage(layout, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["oci"]


def test_the_command_line_says_what_is_wrong_without_a_traceback(oci, tmp_path):
    (tmp_path / "empty").mkdir()
    cmd = [sys.executable, "-m", "gpuprov.mirror.registry_storage"]
    bad = _run(*cmd, str(tmp_path / "empty"), str(tmp_path / "out"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "index.json: missing (not an OCI image layout)" in bad.stderr
    good = _run(*cmd, str(oci), str(tmp_path / "out"))
    assert good.returncode == 0, good.stderr
    assert "nvidia/tiny:1.0 sha256:" in good.stdout
    again = _run(*cmd, str(oci), str(tmp_path / "out"))
    assert again.returncode == 1 and "exists already" in again.stderr
    assert os.path.isdir(tmp_path / "out/docker/registry/v2/repositories/library/ubuntu")
