#!/usr/bin/python3
"""nvidia-persistenced stand-in (gpuprov TEST STAND-IN, not NVIDIA software)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "@LIBREL@"))
import simlib  # noqa: E402

PIDFILE = simlib.ROOT / "run/nvidia-persistenced/nvidia-persistenced.pid"


def main(argv: list[str]) -> int:
    if "--version" in argv:
        print("nvidia-persistenced:  version @VERSION@")
        return 0
    if simlib.loaded_module() is None:
        sys.stderr.write(
            "nvidia-persistenced failed to initialize. Check syslog for more details.\n"
        )
        return 1
    return simlib.serve(PIDFILE, foreground="--foreground" in argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
