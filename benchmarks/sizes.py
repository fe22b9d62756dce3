"""Host counts for the benchmarks that take them (scale_bench, ansible_bench).

`python -m benchmarks` (and `make bench`) runs every benchmark in turn, so each one's
default is its quick set, chosen to finish in minutes on a small machine
(docs/performance.md, "Running the benchmarks"). The sizes the documentation's tables
were measured at are each benchmark's full set:

    GPUPROV_BENCH_SIZES=full    every benchmark at its full sizes
    GPUPROV_BENCH_SIZES=1,5,20  these host counts, for every benchmark that takes them
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

ENV = "GPUPROV_BENCH_SIZES"


def bench_sizes(quick: Sequence[int], full: Sequence[int], limit: int) -> list[int]:
    """The host counts to run: GPUPROV_BENCH_SIZES (`full` or a list), else `quick`."""
    return parse_sizes(os.environ.get(ENV, "").strip() or "quick", quick, full, limit, ENV)


def parse_sizes(
    text: str, quick: Sequence[int], full: Sequence[int], limit: int, where: str
) -> list[int]:
    """`quick`, `full` or comma-separated host counts 1..limit, sorted, deduplicated;
    anything else is a SystemExit naming `where` and what was expected."""
    if text == "quick":
        return sorted(set(quick))
    if text == "full":
        return sorted(set(full))
    if not re.fullmatch(r"[0-9]{1,5}(,[0-9]{1,5})*", text.replace(" ", "")):
        raise SystemExit(f"{where}: `quick`, `full` or comma-separated host counts, got {text!r}")
    sizes = sorted({int(part) for part in text.replace(" ", "").split(",")})
    if not 1 <= sizes[0] <= sizes[-1] <= limit:
        raise SystemExit(f"{where}: host counts must be 1..{limit}, got {text!r}")
    return sizes
