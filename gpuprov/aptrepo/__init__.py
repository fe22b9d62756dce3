"""Signed apt repositories: keys, publishing, verification and the client stanza."""

from __future__ import annotations

from gpuprov.aptrepo.errors import BadPackage, DuplicatePackageError, GpgError, KeyNotFound
from gpuprov.aptrepo.keys import SigningKey, extend_key, generate_key, load_key
from gpuprov.aptrepo.publish import PackageEntry, RepoInfo, publish_repo
from gpuprov.aptrepo.sources import deb822_source
from gpuprov.aptrepo.verify import verify_repo

__all__ = [
    "BadPackage",
    "DuplicatePackageError",
    "GpgError",
    "KeyNotFound",
    "PackageEntry",
    "RepoInfo",
    "SigningKey",
    "deb822_source",
    "extend_key",
    "generate_key",
    "load_key",
    "publish_repo",
    "verify_repo",
]
