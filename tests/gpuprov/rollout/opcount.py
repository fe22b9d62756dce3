"""Count the Python lines a call executes in given source files: a deterministic measure
of work for complexity tests (timings on a shared machine are noise)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def lines_run(files: tuple[str, ...], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Lines executed in `files` (paths ending so) while `fn(*args, **kwargs)` runs."""
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any):
        nonlocal count
        if not frame.f_code.co_filename.endswith(files):
            return None  # do not trace this frame's lines
        if event == "line":
            count += 1
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn(*args, **kwargs)
    finally:
        sys.settrace(old)
    return count
