#!/usr/bin/python3
"""nvcc stand-in (gpuprov TEST STAND-IN, not NVIDIA software): only --version."""

from __future__ import annotations

import sys

VERSION_TEXT = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-@YEAR@ NVIDIA Corporation
Built on @BUILT_ON@
Cuda compilation tools, release @SERIES@, @NVCC@
Build @BUILD@
"""


def main(argv: list[str]) -> int:
    if argv[:1] in (["--version"], ["-V"]):
        sys.stdout.write(VERSION_TEXT)
        return 0
    sys.stderr.write(
        "nvcc fatal   : No input files specified; use option --help for more information\n"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
