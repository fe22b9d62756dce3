"""Client side: the deb822 .sources stanza that points apt at a published repository.

Trust is always a keyring file (Signed-By); `trusted=yes` is never produced, so a
repository whose signature fails is refused by apt instead of being used unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from gpuprov.errors import InputError
from gpuprov.safe_values import ABS_PATH_RE, url_problem

# fullmatch, never `$`: "main\n" would pass a `$` anchor and break every host's sources.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_~/-]*")


def deb822_source(
    url: str,
    suite: str,
    components: Iterable[str],
    keyring_path: str | PurePosixPath,
    *,
    architectures: Iterable[str] | None = None,
    types: Iterable[str] = ("deb",),
    enabled: bool = True,
) -> str:
    """A complete deb822 stanza (ends with a newline), e.g. for
    /etc/apt/sources.list.d/gpuprov.sources. keyring_path is where the keyring lives on
    the *client*, so it must be absolute."""
    components, types = list(components), list(types)
    archs = list(architectures or [])
    problems = []
    why = url_problem(url, ("http", "https", "file"))
    if why:
        problems.append(f"repository URL {url!r}: {why}")
    keyring = PurePosixPath(keyring_path)
    if not keyring.is_absolute() or not ABS_PATH_RE.fullmatch(str(keyring)):
        problems.append(
            f"Signed-By keyring {str(keyring)!r} must be an absolute path without spaces or shell characters"
        )
    if not components:
        problems.append("at least one component is needed (pool layout)")
    for label, values in (("suite", [suite]), ("component", components), ("architecture", archs)):
        problems += [f"invalid {label} {v!r}" for v in values if not _TOKEN.fullmatch(v)]
    problems += [
        f"invalid type {t!r} (deb or deb-src)" for t in types if t not in ("deb", "deb-src")
    ]
    if problems:
        raise InputError("; ".join(problems))
    lines = [
        f"Types: {' '.join(types)}",
        f"URIs: {url}",
        f"Suites: {suite}",
        f"Components: {' '.join(components)}",
    ]
    if archs:
        lines.append(f"Architectures: {' '.join(archs)}")
    lines.append(f"Signed-By: {keyring}")
    if not enabled:
        lines.append("Enabled: no")
    return "\n".join(lines) + "\n"
