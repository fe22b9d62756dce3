#!/usr/bin/python3
"""mokutil shim of the gpuprov GPU simulator: Secure Boot state from the simulated profile."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "@LIBREL@"))
import simlib  # noqa: E402


def main(argv: list[str]) -> int:
    if argv == ["--sb-state"]:
        enabled = bool(simlib.profile().get("secure_boot"))
        print("SecureBoot enabled" if enabled else "SecureBoot disabled")
        return 0
    sys.stderr.write("Usage: mokutil --sb-state (gpuprov simulator supports only this)\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
