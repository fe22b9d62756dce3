"""Whole files with exactly the content we render, written atomically over the SSH
session itself (no SFTP: light test hosts and locked-down sites may not offer it).

`files.template` reads three facts (file, then its sha1, then the directory): three SSH
round trips per host on every no-op apply. `managed_file` reads none when the deploy
passes what it read already (NodeFacts), else one (`FileState`: mode and sha256 in one
command), and writes in one command when something differs.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import shlex
from collections.abc import Iterable

from pyinfra import host
from pyinfra.api import operation

from gpuprov.facts.files import FileStat, FileState

READ = "read"  # managed_file(current=READ): ask the host (the FileState fact)


def sha256(content: str | bytes) -> str:
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


def current_digest(path: str, digests: dict[str, str | None] | None) -> str | None:
    """The file's digest from the deploy's batch read, else from the FileState fact."""
    if digests is not None and path in digests:
        return digests[path]
    state = host.get_fact(FileState, path=path)
    return state["sha256"] if state else None


def write_file_command(path: str, content: str | bytes, mode: str = "644") -> str:
    """One shell command: content via base64, to a temp file beside `path`, then rename,
    so a reader never sees half a file and an interrupted write leaves the old one."""
    data = content.encode() if isinstance(content, str) else content
    q, tmp = shlex.quote(path), shlex.quote(f"{path}.gpuprov-new")
    encoded = base64.b64encode(data).decode()
    return (
        f"mkdir -p {shlex.quote(posixpath.dirname(path) or '/')} && "
        f"printf %s {encoded} | base64 -d > {tmp} && chmod {mode} {tmp} && mv -f {tmp} {q}"
    )


def changed_file_writes(
    files: Iterable[tuple[str, str | bytes]],
    digests: dict[str, str | None] | None,
    mode: str = "644",
) -> list[str]:
    """write_file_command for each (path, content) whose content the host does not hold:
    the files of one source (an apt source and its keyring, a dnf .repo and its keys), so
    the caller refreshes the package index only when one of them changed."""
    return [
        write_file_command(path, content, mode)
        for path, content in files
        if current_digest(path, digests) != sha256(content)
    ]


@operation()
def managed_file(
    path: str,
    content: str | bytes,
    mode: str = "644",
    digests: dict[str, str | None] | None = None,
    current: FileStat | None | str = READ,
):
    """
    Make `path` hold exactly `content` (compared by sha256) with `mode`.

    + path: absolute path on the host
    + content: the file's text or bytes (small files: it travels inside the command)
    + mode: octal file mode
    + digests: current sha256 per path (DeployExtras, read once by the deploy); the mode
      is not compared then
    + current: the file's FileState when the caller read it already (None: absent)

    **Example:**

    .. code:: python

        managed_file(path="/etc/profile.d/cuda.sh", content=text)
    """
    want = sha256(content)
    if digests is not None and path in digests:
        digest = digests[path]
        current = None if digest is None else FileStat(mode=mode, sha256=digest)
    elif current == READ:
        current = host.get_fact(FileState, path=path)
    if isinstance(current, dict) and current["sha256"] == want:
        if current["mode"] == mode:
            host.noop(f"{path} is up to date")
        else:
            yield f"chmod {mode} {shlex.quote(path)}"
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
