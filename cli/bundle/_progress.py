"""Byte progress for export and verify: a rich bar with rate and ETA on a terminal,
a plain line every few seconds otherwise, nothing with --output json."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gpuprov.cli.app import App

PLAIN_EVERY_S = 2.0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


@contextmanager
def byte_progress(
    app: App, label: str, total: int, *, quiet: bool
) -> Iterator[Callable[[int], None]]:
    """Yield a thread-safe callback taking the bytes just processed."""
    if quiet:
        yield lambda n: None
        return
    if app.err.is_terminal:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (
            "{task.description}",
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=app.err, transient=False) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n: bar.advance(task, n)
        return
    lock = threading.Lock()
    start = time.monotonic()
    done = [0]
    last = [start]

    def line(done: int) -> None:
        elapsed = max(time.monotonic() - start, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate else 0
        pct = 100 * done / total if total else 100
        app.err.print(
            f"{label}: {_human(done)} / {_human(total)} ({pct:.0f}%), "
            f"{_human(rate)}/s, ETA {eta:.0f} s",
            markup=False,
            highlight=False,
        )

    def advance(n: int) -> None:
        with lock:
            done[0] += n
            now = time.monotonic()
            if now - last[0] >= PLAIN_EVERY_S:
                last[0] = now
                line(done[0])

    yield advance
    line(done[0])
