"""Run every benchmark module (benchmarks/*_bench.py) in turn; non-zero if any failed."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks


def main() -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.endswith("_bench")
    )
    only = sys.argv[1:]
    failed = []
    for name in names:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        if importlib.import_module(f"benchmarks.{name}").main() != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
