"""TEST SUPPORT: small real bundles, signed, as `gpuprov bundle build` lays them out.

The files are given (apt-like, oci-like, model-like trees); the manifest, its signature and
the public key come from gpuprov.bundle.layout with a real (throwaway) GnuPG key. Used by
the bundle round-trip fixtures (tests/gpuprov/bundle/conftest.py) and the mirror-host
tests that import a bundle onto a light host (tests/deploys/test_mirror_plan_host.py).
"""

from __future__ import annotations

from pathlib import Path

from gpuprov.bundle import layout
from gpuprov.bundle.export import export_bundle


def write_signed_bundle(
    root: Path,
    files: dict[str, bytes],
    key_home: Path,
    base: layout.Manifest | None = None,
) -> Path:
    """`files` (relative path -> bytes) under `root`, with the public key, manifest and
    signature of the key in GnuPG home `key_home`. With `base`, a differential bundle: the
    directory keeps only what the base lacks."""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    layout.export_public_key(root, key_home)
    layout.write_manifest(root, layout.scan_tree(root), base.id if base else None)
    if base is not None:
        manifest = layout.load_manifest(root)
        keep = {f.path for f in layout.carried_files(manifest, base)}
        for entry in manifest.files:
            if entry.path not in keep:
                (root / entry.path).unlink()
    layout.sign_manifest(root, key_home)
    return root


def exported(root: Path, media: Path, chunk_size: int | None = None) -> Path:
    """The bundle `root` exported onto the (new) media directory `media`, as on a USB stick."""
    media.mkdir()
    export_bundle(root, media, chunk_size=chunk_size)
    return media
