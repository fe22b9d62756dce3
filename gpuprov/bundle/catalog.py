"""What a mirror host should serve: read from the bundle it imported.

The signed bundle manifest (`manifest.json`) names every apt repository (`apt/<os-id>/
dists/<suite>/InRelease`) and every model repository of the store (`models/repos/<type>s/
<org>/<name>/refs.json`); the bundle's OCI index (`oci/index.json`) names every image with
its full reference and manifest digest. Both are read from the mirror host's
`/srv/gpuprov/current` (over SSH) or from a bundle directory given on the command line,
and both are untrusted text here: parsed with the bundle's own validating reader and
bounded in size, every name checked with `re.fullmatch` before it reaches a URL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from gpuprov.bundle.images import REF_NAME, registry_of
from gpuprov.bundle.layout import Manifest
from gpuprov.errors import InputError

CURRENT = "/srv/gpuprov/current"  # where `gpuprov bundle import` points at the served bundle
MAX_MANIFEST = 64 * 1024 * 1024  # a bundle of ~300k files; far beyond any real one
MAX_INDEX = 8 * 1024 * 1024

_APT = re.compile(r"apt/([a-z][a-z0-9]{1,31})/dists/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/InRelease")
_MODEL = re.compile(
    r"models/repos/(model|dataset|space)s/([A-Za-z0-9][A-Za-z0-9._-]{0,95})/"
    r"([A-Za-z0-9][A-Za-z0-9._-]{0,95})/refs\.json"
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# What a registry path and a tag may be (the Distribution spec's grammar, bounded).
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*){0,15}"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class CatalogError(ValueError):
    """The bundle's manifest or OCI index cannot be read (the message says which and why)."""


@dataclass(frozen=True)
class CatalogImage:
    ref: str  # as the bundle names it: nvcr.io/nvidia/cuda:12.8.0-base-ubuntu24.04
    repository: str  # as the site registry serves it: nvidia/cuda
    reference: str  # the tag (or the digest for a digest-only reference)
    digest: str  # sha256:<hex> of the manifest


@dataclass
class MirrorCatalog:
    bundle_id: str
    apt: list[tuple[str, str]] = field(default_factory=list)  # (os-id, suite)
    images: list[CatalogImage] = field(default_factory=list)
    models: list[tuple[str, str]] = field(default_factory=list)  # (type, org/name)
    problems: list[str] = field(default_factory=list)  # entries refused, with why


def served_name(ref: str) -> tuple[str, str] | None:
    """(repository, tag or digest) under which the site registry serves the image `ref`:
    the upstream registry's name dropped (a registry mirror is asked for the path only),
    Docker Hub's official images under library/. None when `ref` is not a reference."""
    name, digest = (ref.split("@", 1) + [""])[:2] if "@" in ref else (ref, "")
    last = name.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    registry = registry_of(name)
    path = name[len(registry) + 1 :] if name.startswith(registry + "/") else name
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    reference = digest or tag or "latest"
    if not _REPOSITORY.fullmatch(path):
        return None
    if not (_DIGEST.fullmatch(reference) or _TAG.fullmatch(reference)):
        return None
    return path, reference


def parse_catalog(manifest_text: str | bytes, index_text: str | bytes | None) -> MirrorCatalog:
    """The catalog of a bundle from its manifest.json and oci/index.json texts."""
    try:
        manifest = Manifest.from_json(manifest_text)
    except InputError as exc:  # the layout's reader names every problem
        raise CatalogError(f"manifest.json: {exc}") from None
    cat = MirrorCatalog(manifest.id)
    for entry in manifest.files:
        if m := _APT.fullmatch(entry.path):
            cat.apt.append((m.group(1), m.group(2)))
        elif m := _MODEL.fullmatch(entry.path):
            cat.models.append((m.group(1), f"{m.group(2)}/{m.group(3)}"))
    if index_text is not None:
        _images(cat, index_text)
    cat.apt.sort()
    cat.models.sort()
    return cat


def _images(cat: MirrorCatalog, index_text: str | bytes) -> None:
    try:
        index = json.loads(index_text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CatalogError(f"oci/index.json: not JSON ({exc})") from None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        raise CatalogError("oci/index.json: no `manifests` list")
    for i, item in enumerate(manifests):
        if not isinstance(item, dict):
            cat.problems.append(f"oci/index.json manifests[{i}]: not an object")
            continue
        ref = (item.get("annotations") or {}).get(REF_NAME)
        digest = item.get("digest")
        if not isinstance(ref, str) or not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            cat.problems.append(f"oci/index.json manifests[{i}]: no image name or sha256 digest")
            continue
        served = served_name(ref)
        if served is None:
            cat.problems.append(f"oci/index.json: {ref[:200]!r} is not an image reference")
            continue
        cat.images.append(CatalogImage(ref, served[0], served[1], digest))
    cat.images.sort(key=lambda i: i.ref)


def read_bundle_dir(directory: Path) -> MirrorCatalog:
    """The catalog of a bundle directory (or mounted media) on this machine."""
    manifest = directory / "manifest.json"
    if not manifest.is_file() or manifest.is_symlink():
        raise CatalogError(f"{manifest}: not found (a bundle directory has one)")
    index = directory / "oci" / "index.json"
    return parse_catalog(
        _read_bounded(manifest, MAX_MANIFEST),
        _read_bounded(index, MAX_INDEX) if index.is_file() and not index.is_symlink() else None,
    )


def _read_bounded(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CatalogError(f"{path}: larger than {limit} bytes")
    return data
