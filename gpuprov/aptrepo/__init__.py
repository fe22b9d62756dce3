"""Signed apt repositories: keys, publishing, verification and the client stanza.

The names below are loaded on first use (PEP 562 `__getattr__`): a GPU host's deploys
need only the client stanza (sources.py), while keys, publishing and verification (gpg,
hashing, reading .debs) cost ~17 ms of CPU to import on every `plan` and `apply`
(docs/performance.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpuprov.aptrepo.errors import BadPackage, DuplicatePackageError, GpgError, KeyNotFound
    from gpuprov.aptrepo.keys import SigningKey, extend_key, generate_key, load_key
    from gpuprov.aptrepo.publish import PackageEntry, RepoInfo, publish_repo
    from gpuprov.aptrepo.sources import deb822_source
    from gpuprov.aptrepo.verify import verify_repo

# name -> the submodule that defines it
_WHERE = {
    "BadPackage": "errors",
    "DuplicatePackageError": "errors",
    "GpgError": "errors",
    "KeyNotFound": "errors",
    "PackageEntry": "publish",
    "RepoInfo": "publish",
    "SigningKey": "keys",
    "deb822_source": "sources",
    "extend_key": "keys",
    "generate_key": "keys",
    "load_key": "keys",
    "publish_repo": "publish",
    "verify_repo": "verify",
}

__all__ = [  # the same names as _WHERE (tests/gpuprov/aptrepo/test_lazy_names.py)
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


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # once: later lookups are plain attributes
    return value
