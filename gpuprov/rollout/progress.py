"""Rollout progress: a live table on a terminal, plain lines otherwise, JSON at the end.

The runner calls a ProgressSink; it never prints itself. Progress calls may come from
worker threads (the work callable reports steps in parallel), so sinks lock.
"""

from __future__ import annotations

import sys
import threading
import time
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


class LiveProgress(PlainProgress):
    """A rich Live table of the current wave; redrawn on every transition.

    The Live display stops between waves so an approval prompt can use the terminal.
    """

    def __init__(self, console: Console):
        super().__init__(console.file)
        from rich.live import Live

        self.console = console
        self.live = Live(console=console, refresh_per_second=8, transient=False)
        self.rows: dict[str, list[str]] = {}
        self.wave_name = ""
        self.started = 0.0

    def _table(self):
        from rich.table import Table

        title = cell(f"{self.wave_name}  ({time.monotonic() - self.started:.0f}s)")
        table = Table(title=title, header_style="bold")
        for col in ("host", "status", "step", "error"):
            table.add_column(col, overflow="fold")
        for host, (status, step, error) in self.rows.items():
            style = STATUS_STYLE.get(status, "")
            table.add_row(cell(host), cell(status, style), cell(step), cell(error))
        return table

    def _line(self, text: str) -> None:
        with self._lock:
            self.console.print(cell(text), highlight=False)

    def wave_started(self, wave, todo) -> None:
        self.wave_name, self.started = wave.name, time.monotonic()
        self.rows = {h: ["pending", "", ""] for h in todo}
        self.live.update(self._table())
        self.live.start()

    def host_update(self, host, status, step, error) -> None:
        with self._lock:
            last = error.strip().splitlines()[-1] if error.strip() else ""
            self.rows[host] = [status, step, last[:120]]
            self.live.update(self._table())

    def wave_finished(self, wave, failures, allowed, halted) -> None:
        self.live.update(self._table())
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
