"""Refresh what the mirror host serves from the control node's copies.

Runbook:
1. The model store (`gpuprov mirror add-model` output) → /srv/gpuprov/models. Blobs are
   content-addressed (their name is their sha256), so they are compared by name and size
   and never re-read; manifests and refs.json by sha256. Every repo's refs.json is written
   last: the running server sees a new commit only once all its blobs are in place.
2. The signed apt repositories (`gpuprov repo publish` output, one folder per suite) →
   /srv/gpuprov/apt. Pool files are compared by name and size (apt checks their hashes);
   InRelease/Release/Release.gpg are written last, after the indexes they sign.
3. Files the control node no longer has are removed (after the new ones are in place).

Nothing is restarted: the model server re-reads refs.json when it changes and the apt
server serves files as they are. Run after `mirror_server` (it creates the directories
and the service user); re-running with the same content changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from gpuprov.deploys.mirror_server import DEFAULT_PATHS, MirrorHostPaths
from pyinfra.api import deploy

from gpuprov.operations.tree import tree_sync

STORE_IMMUTABLE = ("blobs/",)
STORE_LAST = ("refs.json",)
APT_LAST = ("InRelease", "Release", "Release.gpg")


@deploy("Mirror content")
def mirror_content(
    store: Path | None = None,
    apt_repos: Path | None = None,
    paths: MirrorHostPaths = DEFAULT_PATHS,
) -> None:
    if store is not None:
        tree_sync(
            name=f"Model store {store} -> {paths.store}",
            src=store,
            dest=paths.store,
            immutable=STORE_IMMUTABLE,
            last=STORE_LAST,
            # tmp/ holds an import in progress on the control node: never shipped.
            exclude=("tmp/",),
        )
    if apt_repos is not None:
        # Any depth of pool/ (…/apt/<suite>/pool/…) is content-addressed by apt's indexes.
        immutable = tuple(
            f"{p.relative_to(apt_repos).as_posix()}/" for p in sorted(apt_repos.glob("**/pool"))
        )
        tree_sync(
            name=f"apt repositories {apt_repos} -> {paths.apt}",
            src=apt_repos,
            dest=paths.apt,
            immutable=immutable,
            last=APT_LAST,
        )
