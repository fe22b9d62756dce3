#!/usr/bin/python3
"""gpuprov-sim-load: at boot, "load" the installed nvidia kernel module (writes /run/nvidia-sim).

Run by gpuprov-sim-load.service; the test bed runs it by hand to simulate a reboot on hosts
without systemd (after clearing /run/nvidia-sim).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "@LIBREL@"))
import simlib  # noqa: E402


def main() -> int:
    # A reboot forgets the fabric state and what was loaded before.
    for stale in (simlib.FABRIC_STATE, simlib.LOADED_VERSION, simlib.LOADED_FLAVOUR):
        if stale.exists():
            stale.unlink()
    error = simlib.load_module()
    if error:
        sys.stderr.write(f"gpuprov-sim-load: nvidia module not loaded: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
