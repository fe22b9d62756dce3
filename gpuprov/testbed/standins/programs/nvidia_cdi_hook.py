#!/usr/bin/python3
"""nvidia-cdi-hook stand-in (gpuprov TEST STAND-IN, not NVIDIA software).

The OCI createContainer hook the CDI spec names: the runtime runs it with the container's
state (JSON) on stdin, before the container's root becomes `/`. `create-symlinks --link
TARGET::LINK` makes the links in the container's root; `update-ldcache` is a no-op here
(the stand-in libraries are placeholders nothing loads). Anything else fails, as an
unknown hook command fails the container.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def container_root() -> Path:
    state = json.load(sys.stdin)
    bundle = Path(state["bundle"])
    config = json.loads((bundle / "config.json").read_text())
    root = Path(config["root"]["path"])
    return root if root.is_absolute() else bundle / root


def create_symlinks(root: Path, args: list[str]) -> int:
    links = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--link"]
    for link in links:
        target, sep, path = link.partition("::")
        if not sep or not path.startswith("/"):
            sys.stderr.write(f"nvidia-cdi-hook: bad --link {link!r}\n")
            return 1
        where = root / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        if not where.is_symlink() and not where.exists():
            os.symlink(target, where)
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("nvidia-cdi-hook: no command\n")
        return 1
    command, args = argv[0], argv[1:]
    if command == "create-symlinks":
        return create_symlinks(container_root(), args)
    if command == "update-ldcache":
        container_root()  # the state must still be read
        return 0
    sys.stderr.write(f"nvidia-cdi-hook: unsupported command {command!r} (gpuprov stand-in)\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
