"""An inventory file's text, read within a size bound, and which format it is in.

Kept apart from the INI reader (ini.py) so that loading a YAML inventory, what every
`plan` and `apply` does, does not import the INI parser (docs/performance.md).
"""

from __future__ import annotations

import re
from pathlib import Path

from gpuprov.errors import InputError, Problem
from gpuprov.inventory.reader import Reader

MAX_BYTES = 16 * 1024 * 1024  # an inventory, not a data set
SECTION_RE = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?")
COMMENT = ("#", ";")
YAML_SUFFIXES = (".yaml", ".yml", ".json")


def is_ini(path: Path, text: str) -> bool:
    """An INI inventory? `.yaml`/`.yml`/`.json` never are; `.ini` always is; otherwise
    (DeepOps' `config/inventory` has no suffix) the first line that is not blank or a
    comment decides: a `[section]` or a `host key=value` line."""
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return False
    if suffix == ".ini":
        return True
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(COMMENT):
            continue
        if line == "---":
            return False
        return bool(
            SECTION_RE.fullmatch(line) or re.fullmatch(r"[^\s:=]+(:\d+)?(\s+\S+=.*)?", line)
        )
    return False


def read_text(path: Path, r: Reader) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputError([Problem(r.loc(), "inventory file not found")]) from None
    except OSError as exc:
        raise InputError([Problem(r.loc(), f"cannot read inventory: {exc}")]) from None
    if len(data) > MAX_BYTES:
        raise InputError([Problem(r.loc(), f"inventory larger than {MAX_BYTES} bytes")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError([Problem(r.loc(), f"cannot read inventory: not UTF-8 ({exc})")]) from None
