"""`gpuprov inventory import`: an Ansible inventory (YAML or INI) rewritten in our format,
comments of a YAML file kept."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gpuprov.errors import InputError
from gpuprov.inventory.ansible import problem_at, to_native
from gpuprov.inventory.loader import build, parse_any
from gpuprov.inventory.reader import Reader


def convert_file(src: Path | str, dst: Path | str, force: bool = False) -> Path:
    """Write `src` (an Ansible inventory) to `dst` in our format, comments kept.

    Validates the result first (InputError with every problem, nothing written);
    refuses to replace `dst` unless `force`; writes atomically (temp file + rename)."""
    from ruamel.yaml import YAML

    src, dst = Path(src), Path(dst)
    r = Reader(src)
    root = parse_any(src, r)
    if "all" not in root:
        raise InputError([problem_at(r, "not an Ansible inventory (no top-level `all:`)")])
    native = to_native(root, r, default_name=dst.stem)
    build(native, src, r)  # same validation as `load_inventory`, errors located in `src`
    r.raise_if_problems()
    if dst.exists() and not force:
        raise InputError([problem_at(Reader(dst), "already exists; pass --force to replace it")])
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"# Converted from {src.name} by `gpuprov inventory import`.\n")
            yaml.dump(native, fh)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst
