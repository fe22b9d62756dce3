"""Container images into the bundle's one OCI image layout, with skopeo (no daemon).

Each image is first copied from its registry into the cache's OCI layout (skopeo reuses
the blobs already there, so a re-run fetches only manifests and what changed), then from
the cache into BUNDLE/oci: one layout for all images, every blob stored once, each image
tagged with its full reference in `org.opencontainers.image.ref.name`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gpuprov.errors import GpuprovError
from gpuprov.safe_values import IMAGE_RE

SKOPEO_TIMEOUT_S = 3600
REF_NAME = "org.opencontainers.image.ref.name"


class ImageError(GpuprovError):
    """skopeo could not copy an image (named in the message)."""


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    digest: str  # of the manifest in the layout
    size: int  # every blob it references (manifest, config, layers)


def registry_of(ref: str) -> str:
    first = ref.split("/", 1)[0]
    return (
        first
        if "/" in ref and ("." in first or ":" in first or first == "localhost")
        else "docker.io"
    )


def _skopeo(args: list[str], what: str) -> str:
    if shutil.which("skopeo") is None:
        raise ImageError(
            "skopeo is not installed (apt-get install skopeo; scripts/install-system-deps.sh)"
        )
    try:
        done = subprocess.run(
            ["skopeo", *args], capture_output=True, text=True, timeout=SKOPEO_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise ImageError(f"{what}: skopeo took longer than {SKOPEO_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise ImageError(f"{what}: {done.stderr.strip()[-1500:]}")
    return done.stdout


def _tls(ref: str, insecure: tuple[str, ...], flag: str) -> list[str]:
    return [f"--{flag}=false"] if registry_of(ref) in insecure else []


def _platform_manifest(ref: str, tls: list[str], arch: str) -> tuple[str, dict]:
    """(digest, manifest) of the image skopeo copies for linux/`arch` (its manifest, or
    the platform's entry of a multi-platform index), from the manifest alone."""
    raw = _skopeo(["inspect", "--raw", *tls, f"docker://{ref}"], f"image {ref}")
    manifest = json.loads(raw)
    if "manifests" not in manifest:
        return "sha256:" + hashlib.sha256(raw.encode()).hexdigest(), manifest
    for m in manifest["manifests"]:
        platform = m.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == arch:
            name = ref.split("@", 1)[0]
            repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
            inner = _skopeo(
                ["inspect", "--raw", *tls, f"docker://{repo}@{m['digest']}"], f"image {ref}"
            )
            return str(m["digest"]), json.loads(inner)
    raise ImageError(f"image {ref}: no linux/{arch} image in its index")


def cached_digest(cache_layout: Path, ref: str) -> str | None:
    index = cache_layout / "index.json"
    if not index.is_file():
        return None
    for m in json.loads(index.read_text()).get("manifests", []):
        if (m.get("annotations") or {}).get(REF_NAME) == ref:
            return str(m.get("digest"))
    return None


def _seen_path(cache_layout: Path) -> Path:
    return cache_layout.with_name(cache_layout.name + ".remote.json")


def fetch(ref: str, cache_layout: Path, insecure: tuple[str, ...] = ()) -> bool:
    """Registry -> the cache's OCI layout. Only the manifest is read when the cache holds
    the image the registry has now (skopeo may convert a Docker manifest to OCI, so the
    registry's digest is remembered beside the layout with the local one); otherwise
    skopeo copies it, reusing the blobs it has. Returns whether anything was copied."""
    if not IMAGE_RE.fullmatch(ref):  # the loader refused it already; never to a shell word
        raise ImageError(f"not an image reference: {ref!r}")
    remote, _ = _platform_manifest(ref, _tls(ref, insecure, "tls-verify"), "amd64")
    seen_file = _seen_path(cache_layout)
    seen = json.loads(seen_file.read_text()) if seen_file.is_file() else {}
    local = cached_digest(cache_layout, ref)
    if local is not None and seen.get(ref) == {"remote": remote, "local": local}:
        return False
    cache_layout.parent.mkdir(parents=True, exist_ok=True)
    _skopeo(
        [
            "copy",
            "--quiet",
            *_tls(ref, insecure, "src-tls-verify"),
            f"docker://{ref}",
            f"oci:{cache_layout}:{ref}",
        ],
        f"image {ref}",
    )
    seen[ref] = {"remote": remote, "local": cached_digest(cache_layout, ref)}
    tmp = seen_file.with_name(seen_file.name + ".tmp")
    tmp.write_text(json.dumps(seen, indent=1, sort_keys=True))
    tmp.replace(seen_file)
    return True


def remote_size(ref: str, insecure: tuple[str, ...] = (), arch: str = "amd64") -> int:
    """The bytes of the image's blobs as the registry lists them (--dry-run; no blobs are
    fetched). For a multi-platform index, the linux/`arch` image's."""
    return manifest_size(_platform_manifest(ref, _tls(ref, insecure, "tls-verify"), arch)[1])


def manifest_size(manifest: dict) -> int:
    blobs = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
    return sum(int(b.get("size", 0)) for b in blobs)


def export(refs: list[str], cache_layout: Path, out_layout: Path) -> list[ImageInfo]:
    """Cache layout -> the bundle's layout (local copies, blobs deduplicated)."""
    for ref in refs:
        _skopeo(
            ["copy", "--quiet", f"oci:{cache_layout}:{ref}", f"oci:{out_layout}:{ref}"],
            f"image {ref}",
        )
    return describe(out_layout)


def describe(layout: Path) -> list[ImageInfo]:
    index = json.loads((layout / "index.json").read_text())
    out = []
    for m in index.get("manifests", []):
        ref = (m.get("annotations") or {}).get(REF_NAME, "")
        digest = m["digest"]
        manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_text())
        out.append(ImageInfo(ref, digest, int(m.get("size", 0)) + manifest_size(manifest)))
    return sorted(out, key=lambda i: i.ref)
