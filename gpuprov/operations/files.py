"""Whole files with exactly the content we render, written atomically over the SSH
session itself (no SFTP: light test hosts and locked-down sites may not offer it)."""

from __future__ import annotations

import base64
import hashlib
import posixpath
import shlex

from pyinfra import host
from pyinfra.api import operation

from gpuprov.operations.facts import FileDigest


def sha256(content: str | bytes) -> str:
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


def current_digest(path: str, digests: dict[str, str | None] | None) -> str | None:
    """The file's digest from the deploy's batch read, else from the FileDigest fact."""
    if digests is not None and path in digests:
        return digests[path]
    return host.get_fact(FileDigest, path=path)


def write_file_command(path: str, content: str | bytes, mode: str = "644") -> str:
    """One shell command: content via base64, to a temp file beside `path`, then rename,
    so a reader never sees half a file and an interrupted write leaves the old one."""
    data = content.encode() if isinstance(content, str) else content
    q, tmp = shlex.quote(path), shlex.quote(f"{path}.gpuprov-new")
    encoded = base64.b64encode(data).decode()
    return (
        f"mkdir -p {shlex.quote(posixpath.dirname(path))} && "
        f"printf %s {encoded} | base64 -d > {tmp} && chmod {mode} {tmp} && mv -f {tmp} {q}"
    )


@operation()
def managed_file(
    path: str,
    content: str | bytes,
    mode: str = "644",
    digests: dict[str, str | None] | None = None,
):
    """
    Make `path` hold exactly `content` (compared by sha256).

    + path: absolute path on the host
    + content: the file's text or bytes
    + mode: octal file mode
    + digests: current sha256 per path (FileDigests fact, read once by the deploy)

    **Example:**

    .. code:: python

        managed_file(path="/etc/profile.d/cuda.sh", content=text)
    """
    if current_digest(path, digests) == sha256(content):
        host.noop(f"{path} is up to date")
        return
    yield write_file_command(path, content, mode)


@operation()
def absent_file(path: str, digests: dict[str, str | None] | None = None):
    """
    Remove `path` if it exists.

    + path: absolute path on the host
    + digests: current sha256 per path (None = absent)
    """
    if current_digest(path, digests) is None:
        host.noop(f"{path} is absent")
        return
    yield f"rm -f {shlex.quote(path)}"
