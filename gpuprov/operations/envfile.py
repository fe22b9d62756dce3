"""/etc/environment: set a few variables, keep every other line of the site's.

pam_env reads the file for every PAM session (ssh, login, su, cron), shell or not, so a
variable here reaches sessions /etc/profile.d never sees. Its syntax is not a shell's:
`KEY=value` per line, no `export`, no expansion; values we write are checked URLs and
flags (safe_values), so they need no quoting.
"""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import operation

from gpuprov.operations.files import write_file_command

ENVIRONMENT = "/etc/environment"
_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_VALUE = re.compile(r"[A-Za-z0-9._~:/\[\]@%+-]{0,2048}")
_ASSIGN = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=.*")


def merge_environment(current: str | None, values: dict[str, str]) -> str | None:
    """`current` with each of `values` set exactly once (in place of any earlier line for
    that name, the rest kept as is); None when nothing would change."""
    for name, value in values.items():
        if not _NAME.fullmatch(name) or not _VALUE.fullmatch(value):
            raise ValueError(f"{ENVIRONMENT}: refusing to write {name}={value!r}")
    lines = (current or "").splitlines()
    kept: list[str] = []
    seen: dict[str, str] = {}
    for line in lines:
        m = _ASSIGN.fullmatch(line)
        if m and m.group(1) in values:
            seen.setdefault(m.group(1), line)
            continue
        kept.append(line)
    wanted = [f"{name}={value}" for name, value in values.items()]
    if all(seen.get(n) == w for n, w in zip(values, wanted, strict=True)) and len(kept) + len(
        values
    ) == len(lines):
        return None  # every variable is there once, with its value
    return "\n".join(kept + wanted) + "\n"


@operation()
def environment_vars(values: dict[str, str], current: str | None):
    """
    Set variables in /etc/environment for every PAM session; the site's other lines stay.

    + values: name -> value
    + current: the file's text now (None when absent)
    """
    merged = merge_environment(current, values)
    if merged is None:
        host.noop(f"{ENVIRONMENT} sets {', '.join(values)} already")
        return
    yield write_file_command(ENVIRONMENT, merged)
