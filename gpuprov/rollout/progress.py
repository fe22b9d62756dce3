"""Rollout progress: a live table on a terminal, plain lines otherwise, JSON at the end.

The runner calls a ProgressSink; it never prints itself. Progress calls may come from
worker threads (the work callable reports steps in parallel), so sinks lock.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import IO, TYPE_CHECKING, Any, Protocol

from gpuprov.terminal import cell, plain

if TYPE_CHECKING:
    from rich.console import Console

    from gpuprov.rollout.planner import RolloutPlan, Wave
    from gpuprov.rollout.runner import RolloutReport

STATUS_STYLE = {
    "pending": "dim",
    "draining": "yellow",
    "running": "cyan",
    "gating": "blue",
    "undraining": "yellow",
    "done": "green",
    "failed": "bold red",
    "skipped": "dim",
}


class ProgressSink(Protocol):
    def rollout_started(self, rollout_id: int, plan: RolloutPlan, resumed: bool) -> None: ...
    def wave_started(self, wave: Wave, todo: list[str]) -> None: ...
    def host_update(self, host: str, status: str, step: str, error: str) -> None: ...
    def wave_finished(self, wave: Wave, failures: int, allowed: int, halted: bool) -> None: ...
    def rollout_finished(self, report: RolloutReport) -> None: ...


class NullProgress:
    def rollout_started(self, rollout_id, plan, resumed) -> None:
        pass

    def wave_started(self, wave, todo) -> None:
        pass

    def host_update(self, host, status, step, error) -> None:
        pass

    def wave_finished(self, wave, failures, allowed, halted) -> None:
        pass

    def rollout_finished(self, report) -> None:
        pass


class PlainProgress:
    """One line per transition: for logs, CI and pipes."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._last: dict[str, tuple[str, str]] = {}

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(f"{time.strftime('%H:%M:%S')} {plain(text)}\n")
            self.stream.flush()

    def rollout_started(self, rollout_id, plan, resumed) -> None:
        verb = "resuming" if resumed else "starting"
        left_out = ", ".join(f"{n} {s}" for s, n in sorted(plan.excluded_counts().items()))
        self._line(
            f"{verb} rollout {rollout_id}: {len(plan.waves)} waves, {len(plan.host_names)} hosts"
            + (f" (not in any wave: {left_out})" if left_out else "")
        )

    def wave_started(self, wave, todo) -> None:
        again = (
            "" if len(todo) == len(wave.hosts) else f" ({len(wave.hosts) - len(todo)} already done)"
        )
        self._line(f"{wave.name}: {len(todo)} hosts{again}: {', '.join(todo)}")

    def host_update(self, host, status, step, error) -> None:
        if self._last.get(host) == (status, step):
            return
        self._last[host] = (status, step)
        first = error.strip().splitlines()[-1] if error.strip() else ""
        self._line(f"  {host}: {status} ({step})" + (f": {first}" if first else ""))

    def wave_finished(self, wave, failures, allowed, halted) -> None:
        verdict = "HALTED" if halted else "ok"
        self._line(f"{wave.name}: {verdict}, {failures} failed (allowed {allowed})")

    def rollout_finished(self, report) -> None:
        self._line(
            f"rollout {report.rollout_id} {report.status}"
            + (f": {report.reason}" if report.reason else "")
        )
        for failure in report.failed:
            excerpt = failure.error.strip().splitlines()[-1:] or [""]
            self._line(f"  failed {failure.host} [{failure.wave}] at {failure.step}: {excerpt[0]}")


ACTIVE = ("failed", "draining", "running", "gating", "undraining")
TABLE_CHROME = 7  # title, borders, header and the "more hosts" row around the host rows


class LiveProgress(PlainProgress):
    """A rich Live table of the current wave, redrawn by Live's own refresh (8 per second).

    A transition only updates the host's row: rebuilding the table on each one is quadratic
    in the wave's size (a 250-host wave has ~2,000 transitions). A wave taller than the
    terminal shows its failed and busy hosts first, then as many others as fit, and counts
    the rest by status in the title. The Live display stops between waves so an approval
    prompt can use the terminal.
    """

    def __init__(self, console: Console):
        super().__init__(console.file)
        from rich.live import Live

        self.console = console
        self.rows: dict[str, list[str]] = {}
        self._rows_lock = threading.Lock()  # not _lock: Live's refresh thread takes this one
        self.wave_name = ""
        self.started = 0.0
        self.live = Live(
            console=console, refresh_per_second=8, transient=False, get_renderable=self._table
        )

    def _visible(self) -> tuple[list[tuple[str, list[str]]], Counter[str]]:
        """The rows that fit on the terminal (failed and busy hosts first) and the counts."""
        with self._rows_lock:
            rows = [(host, list(row)) for host, row in self.rows.items()]
        counts = Counter(row[0] for _, row in rows)
        room = max(3, self.console.height - TABLE_CHROME)
        if len(rows) <= room:
            return rows, counts
        first = [r for r in rows if r[1][0] in ACTIVE]
        rest = [r for r in rows if r[1][0] not in ACTIVE]
        return (first + rest)[:room], counts

    def _table(self):
        from rich.table import Table

        shown, counts = self._visible()
        total = sum(counts.values())
        title = f"{self.wave_name}  ({time.monotonic() - self.started:.0f}s)"
        if len(shown) < total:
            tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            title += f"  {total} hosts: {tally}"
        table = Table(title=cell(title), header_style="bold")
        for col in ("host", "status", "step", "error"):
            table.add_column(col, overflow="fold")
        for host, (status, step, error) in shown:
            style = STATUS_STYLE.get(status, "")
            table.add_row(cell(host), cell(status, style), cell(step), cell(error))
        if len(shown) < total:
            table.add_row(cell(f"... {total - len(shown)} more"), "", "", "")
        return table

    def _line(self, text: str) -> None:
        with self._lock:
            self.console.print(cell(text), highlight=False)

    def wave_started(self, wave, todo) -> None:
        self.wave_name, self.started = wave.name, time.monotonic()
        with self._rows_lock:
            self.rows = {h: ["pending", "", ""] for h in todo}
        self.live.start(refresh=True)

    def host_update(self, host, status, step, error) -> None:
        last = error.strip().splitlines()[-1] if error.strip() else ""
        with self._rows_lock:
            self.rows[host] = [status, step, last[:120]]

    def wave_finished(self, wave, failures, allowed, halted) -> None:
        self.live.refresh()
        self.live.stop()
        super().wave_finished(wave, failures, allowed, halted)

    def rollout_finished(self, report) -> None:
        if self.live.is_started:
            self.live.stop()
        super().rollout_finished(report)


def make_progress(console: Console) -> ProgressSink:
    """Live table on a terminal, plain lines when output is piped or logged, or when
    NO_COLOR asked for plain output (the console then has no colour system)."""
    live = console.is_terminal and console.color_system is not None
    return LiveProgress(console) if live else PlainProgress(console.file)


def report_json(report: RolloutReport) -> dict[str, Any]:
    return report.to_dict()
