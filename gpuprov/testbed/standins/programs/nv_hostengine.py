#!/usr/bin/python3
"""nv-hostengine stand-in (gpuprov TEST STAND-IN, not NVIDIA software)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "@LIBREL@"))
import simlib  # noqa: E402

PIDFILE = simlib.ROOT / "run/nvidia-sim/nv-hostengine.pid"


def main(argv: list[str]) -> int:
    if "--version" in argv or "-v" in argv:
        print("Version : @VERSION@")
        return 0
    if simlib.pid_alive(PIDFILE):
        print("Host engine already running with pid " + (simlib.read(PIDFILE) or ""))
        return 1
    if "-n" not in argv:
        print("Started host engine version @VERSION@ using port number: 5555")
    return simlib.serve(PIDFILE, foreground="-n" in argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
