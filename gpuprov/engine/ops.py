"""Operations of our own where pyinfra's cost round trips.

`files.template` reads three facts (file, then its sha1, then the directory) — three SSH
round trips per host on every no-op apply. `rendered_file` reads one (mode + sha256 in
one command) and writes atomically in one command when something differs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path

import jinja2
from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation


@dataclass(frozen=True)
class FileDigest:
    mode: str  # "644"
    sha256: str


class FileState(FactBase):
    """Mode and sha256 of a regular file; None when it does not exist."""

    def command(self, path: str) -> str:
        q = shlex.quote(path)
        return (
            f"if [ -f {q} ]; then stat -c %a {q} && sha256sum {q} | cut -d' ' -f1; "
            "else echo absent; fi"
        )

    def process(self, output: list[str]) -> FileDigest | None:  # type: ignore[override]
        if not output or output[0].strip() == "absent":
            return None
        return FileDigest(mode=output[0].strip(), sha256=output[1].strip())


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


@functools.cache
def _compiled(template: Path) -> jinja2.Template:
    return _ENV.from_string(template.read_text())  # once per process, not once per host


def render(template: Path, **values: object) -> str:
    return _compiled(template).render(**values)


READ = "read"  # rendered_file(current=READ): ask the host (the FileState fact)


@operation()
def rendered_file(
    dest: str,
    content: str,
    mode: str = "644",
    dir_mode: str = "755",
    current: FileDigest | None | str = READ,
):
    """Make `dest` hold exactly `content` with `mode`, creating its directory.

    + dest: absolute path on the host
    + content: the file's text (small files: it travels inside the command)
    + mode / dir_mode: octal strings
    + current: the file's FileState when the caller read it already (None: absent)

    rendered_file(dest="/etc/gpuprov/host.json", content='{"host": "gpu001"}\\n')
    """
    if current == READ:
        current = host.get_fact(FileState, path=dest)
    digest = hashlib.sha256(content.encode()).hexdigest()
    if current is not None and current.sha256 == digest and current.mode == mode:
        host.noop(f"{dest} is up to date")
        return
    q, tmp = shlex.quote(dest), shlex.quote(f"{dest}.gpuprov-tmp")
    if current is not None and current.sha256 == digest:
        yield StringCommand(f"chmod {mode} {q}")
        return
    payload = base64.b64encode(content.encode()).decode()
    directory = shlex.quote(posixpath.dirname(dest) or "/")
    yield StringCommand(
        f"mkdir -p -m {dir_mode} {directory} && printf %s {payload} | base64 -d > {tmp} "
        f"&& chmod {mode} {tmp} && mv -f {tmp} {q}"
    )
