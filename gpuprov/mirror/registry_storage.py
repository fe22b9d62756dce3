"""The Distribution registry's filesystem storage, written from an OCI image layout.

Debian's `docker-registry` (the Distribution registry, 2.8) serves what its storage
driver finds under ROOT/docker/registry/v2:

    blobs/sha256/<first two hex>/<hex>/data                      every blob, by digest
    repositories/<name>/_layers/sha256/<hex>/link                "sha256:<hex>" per config/layer
    repositories/<name>/_manifests/revisions/sha256/<hex>/link   per manifest of the repository
    repositories/<name>/_manifests/tags/<tag>/current/link       the tag's manifest
    repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link

A bundle's `oci/` is one OCI image layout holding every image, each tagged in index.json
with its full reference (`org.opencontainers.image.ref.name`, gpuprov/bundle/images.py).
Each reference becomes a repository named by its path without the registry host (what a
containerd/docker registry mirror asks for: `nvcr.io/nvidia/cuda:12.8` is pulled as
`nvidia/cuda:12.8`; Docker Hub's one-word names get `library/`).

Why write the layout instead of `skopeo copy` into a write-enabled registry: the blobs
are already on the mirror host's disk, verified by `gpuprov bundle import`; hard links
make the storage with no second copy, no registry process to start, stop and make
read-only again, and no network. The served registry is then started read-only.

The layout is untrusted input even after import (a bundle is made elsewhere): digests
and names are matched with re.fullmatch, every blob must be a regular file (never a
symlink) of the size its descriptor gives, manifests and indexes are read bounded and
their sha256 checked. The storage is written beside OUT and renamed into place: a
failure leaves nothing half-written.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from gpuprov.errors import GpuprovError

REF_NAME = "org.opencontainers.image.ref.name"
DIGEST_RE = re.compile(r"sha256:([0-9a-f]{64})")
# A reference as gpuprov/bundle/images.py writes it: [registry/]path[:tag][@sha256:hex].
COMPONENT = r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?"
REF_RE = re.compile(
    rf"(?P<name>{COMPONENT}(?::[0-9]{{1,5}})?(?:/{COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@sha256:(?P<digest>[0-9a-f]{64}))?"
)
INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
MAX_JSON_BYTES = 4 * 1024 * 1024  # a manifest or an index (real ones are a few KiB)
MAX_IMAGES = 10_000
MAX_DEPTH = 4  # index -> manifest (nested indexes are allowed, a little)


class RegistryStorageError(GpuprovError):
    """The OCI layout cannot be served: what is wrong and where."""


@dataclass(frozen=True, order=True)
class Image:
    repository: str  # e.g. "nvidia/cuda"
    tag: str  # "" for an image referenced by digest only
    digest: str  # "sha256:<hex>" of the top manifest (or index)


def repository_of(ref: str) -> tuple[str, str | None]:
    """(repository, tag) a registry mirror serves `ref` as."""
    m = REF_RE.fullmatch(ref)
    if m is None:
        raise RegistryStorageError(f"{REF_NAME} {ref!r}: not an image reference")
    name, tag = m.group("name"), m.group("tag")
    first, _, rest = name.partition("/")
    # The first component is a registry host when it looks like one (docker's own rule).
    registry = first if rest and ("." in first or ":" in first or first == "localhost") else None
    path = rest if registry is not None else name
    if ":" in path:
        raise RegistryStorageError(f"{REF_NAME} {ref!r}: a port outside the registry host")
    if registry in (None, "docker.io", "index.docker.io") and "/" not in path:
        path = f"library/{path}"
    if tag is None and m.group("digest") is None:
        tag = "latest"
    return path, tag


def _hex(digest: object, where: str) -> str:
    m = DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if m is None:
        raise RegistryStorageError(f"{where}: digest {digest!r} is not sha256:<64 hex>")
    return m.group(1)


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"

    def blob(self, hexd: str, size: object, where: str) -> Path:
        path = self.blobs / hexd
        try:
            st = path.lstat()
        except FileNotFoundError:
            raise RegistryStorageError(f"{where}: blob sha256:{hexd} is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise RegistryStorageError(f"{where}: blob sha256:{hexd} is not a regular file")
        if not isinstance(size, int) or isinstance(size, bool) or st.st_size != size:
            raise RegistryStorageError(
                f"{where}: blob sha256:{hexd} has {st.st_size} bytes, its descriptor says {size!r}"
            )
        return path

    def json_blob(self, hexd: str, size: object, where: str) -> dict:
        path = self.blob(hexd, size, where)
        if path.stat().st_size > MAX_JSON_BYTES:
            raise RegistryStorageError(f"{where}: manifest sha256:{hexd} over {MAX_JSON_BYTES} B")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != hexd:
            raise RegistryStorageError(f"{where}: manifest sha256:{hexd} does not match its digest")
        return _json(data, f"{where}: manifest sha256:{hexd}")


def _json(data: bytes, where: str) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryStorageError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise RegistryStorageError(f"{where}: not a JSON object")
    return doc


def read_index(oci: Path) -> list[tuple[str, dict]]:
    """(reference, descriptor) of every tagged image of the layout's index.json."""
    index_path = oci / "index.json"
    if index_path.is_symlink() or not index_path.is_file():
        raise RegistryStorageError(f"{index_path}: missing (not an OCI image layout)")
    if index_path.stat().st_size > MAX_JSON_BYTES:
        raise RegistryStorageError(f"{index_path}: over {MAX_JSON_BYTES} bytes")
    index = _json(index_path.read_bytes(), str(index_path))
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or len(manifests) > MAX_IMAGES:
        raise RegistryStorageError(
            f"{index_path}: 'manifests' must be a list (at most {MAX_IMAGES})"
        )
    out = []
    for i, desc in enumerate(manifests):
        if not isinstance(desc, dict):
            raise RegistryStorageError(f"{index_path}: manifests[{i}] is not an object")
        ref = (desc.get("annotations") or {}).get(REF_NAME)
        if not isinstance(ref, str):
            raise RegistryStorageError(f"{index_path}: manifests[{i}] has no {REF_NAME}")
        out.append((ref, desc))
    return out


def _link(src: Path, dest: Path) -> None:
    """Hard link where the file system allows it (no second copy), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(src, dest)


def _write_link(path: Path, hexd: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"sha256:{hexd}")


class _Writer:
    def __init__(self, layout: _Layout, v2: Path) -> None:
        self.layout = layout
        self.v2 = v2
        self.stored: set[str] = set()

    def store_blob(self, hexd: str, size: object, where: str) -> None:
        src = self.layout.blob(hexd, size, where)
        if hexd not in self.stored:
            _link(src, self.v2 / "blobs" / "sha256" / hexd[:2] / hexd / "data")
            self.stored.add(hexd)

    def manifest(self, repo: str, desc: dict, where: str, depth: int = 0) -> str:
        """Store the manifest (or index) `desc` and all it references under `repo`."""
        if depth > MAX_DEPTH:
            raise RegistryStorageError(f"{where}: indexes nested deeper than {MAX_DEPTH}")
        hexd = _hex(desc.get("digest"), where)
        doc = self.layout.json_blob(hexd, desc.get("size"), where)
        media = doc.get("mediaType") or desc.get("mediaType")
        rdir = self.v2 / "repositories" / repo
        if media in INDEX_TYPES or "manifests" in doc:
            children = doc.get("manifests")
            if not isinstance(children, list):
                raise RegistryStorageError(f"{where}: index sha256:{hexd} has no manifest list")
            for child in children:
                if not isinstance(child, dict):
                    raise RegistryStorageError(f"{where}: index sha256:{hexd}: bad entry")
                self.manifest(repo, child, where, depth + 1)
        elif media in MANIFEST_TYPES or "layers" in doc:
            layers = doc.get("layers")
            config = doc.get("config")
            if not isinstance(layers, list) or not isinstance(config, dict):
                raise RegistryStorageError(f"{where}: manifest sha256:{hexd} lacks config/layers")
            for blob in (config, *layers):
                if not isinstance(blob, dict):
                    raise RegistryStorageError(f"{where}: manifest sha256:{hexd}: bad descriptor")
                bhex = _hex(blob.get("digest"), where)
                self.store_blob(bhex, blob.get("size"), where)
                _write_link(rdir / "_layers" / "sha256" / bhex / "link", bhex)
        else:
            raise RegistryStorageError(f"{where}: sha256:{hexd}: unknown media type {media!r}")
        self.store_blob(hexd, desc.get("size"), where)
        _write_link(rdir / "_manifests" / "revisions" / "sha256" / hexd / "link", hexd)
        return hexd


def write_storage(oci: Path, out: Path) -> list[Image]:
    """Write the registry storage for every image of `oci` to `out` (which must not
    exist), atomically. Returns the images, sorted."""
    if out.exists() or out.is_symlink():
        raise RegistryStorageError(
            f"{out}: exists already (the storage of one bundle is written once)"
        )
    refs = read_index(oci)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    images: dict[tuple[str, str | None], str] = {}
    try:
        writer = _Writer(_Layout(oci), tmp / "docker" / "registry" / "v2")
        (tmp / "docker" / "registry" / "v2" / "repositories").mkdir(parents=True)
        for i, (ref, desc) in enumerate(refs):
            repo, tag = repository_of(ref)
            where = f"{oci}/index.json: manifests[{i}] ({ref})"
            hexd = writer.manifest(repo, desc, where)
            seen = images.get((repo, tag))
            if tag is not None and seen is not None and seen != hexd:
                raise RegistryStorageError(
                    f"{where}: {repo}:{tag} names two images (sha256:{seen} and sha256:{hexd}): "
                    "two registries have the same repository path"
                )
            images[(repo, tag)] = hexd
            if tag is not None:
                tags = tmp / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag
                _write_link(tags / "current" / "link", hexd)
                _write_link(tags / "index" / "sha256" / hexd / "link", hexd)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(Image(r, t or "", f"sha256:{h}") for (r, t), h in images.items())


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m gpuprov.mirror.registry_storage",
        description="Write docker-registry's storage for an OCI image layout (hard links).",
    )
    parser.add_argument("oci", type=Path, help="the OCI image layout (a bundle's oci/)")
    parser.add_argument("out", type=Path, help="the registry's rootdirectory (must not exist)")
    args = parser.parse_args(argv)
    try:
        images = write_storage(args.oci, args.out)
    except (RegistryStorageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for image in images:
        print(f"{image.repository}:{image.tag or '-'} {image.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
