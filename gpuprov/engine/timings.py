"""Where one run's time goes (`gpuprov apply|plan --timings`, docs/performance.md).

The run is cut into contiguous phases: each `mark(name)` closes the phase that began at
the previous mark (the first one at the process's own start, as the kernel recorded it,
so the interpreter's startup and the imports before `main()` are counted too). Phases
therefore add up to the wall time from process start to the report; what a phase does
not name is left as "other". Marking costs a clock read: the recorder is always on and
only printed when asked for.

Next to the phases, every host's one fact round trip: its wall on the control node and
the time the host-side script took by its own clock (NodeFacts reports it), so the SSH
and Python share of a round trip is the difference.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def process_age() -> float | None:
    """Seconds since this process started, from /proc/self/stat (10 ms ticks); None off
    Linux or when /proc is not readable."""
    try:
        stat = Path("/proc/self/stat").read_text()
        # Field 22 (starttime); the command name (field 2) may hold spaces: split after it.
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        return max(0.0, since_boot - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


@dataclass(frozen=True)
class FactTiming:
    round_trip: float  # seconds, on the control node: the fact's command sent to parsed
    script: float | None  # seconds the host-side script took by its own clock


def _spread(values: list[float]) -> dict[str, float]:
    # (not `statistics`: it imports fractions and decimal, a cost on every command)
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"min": round(ordered[0], 4), "median": round(median, 4), "max": round(ordered[-1], 4)}


@dataclass
class Timings:
    origin: float  # perf_counter() value of the process start
    last: float
    phases: dict[str, float] = field(default_factory=dict)
    facts: dict[str, FactTiming] = field(default_factory=dict)
    connects: dict[str, float] = field(default_factory=dict)  # host -> its SSH connect, s

    @classmethod
    def from_process_start(cls) -> Timings:
        now = time.perf_counter()
        origin = now - (process_age() or 0.0)
        return cls(origin=origin, last=origin)

    def mark(self, phase: str) -> None:
        """Close the phase running since the previous mark under `phase` (a name marked
        again adds up: a rollout's waves each evaluate, for example)."""
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + (now - self.last)
        self.last = now

    def to_dict(self) -> dict[str, Any]:
        """{"wall", "phases" (in order, "other" last: since the last mark), "facts",
        "hosts" (each host's connect, round trip and script: a mirror host's script
        differs from a GPU host's, and a median hides which host the time is on)}."""
        self.mark("other")
        phases = {name: round(s, 4) for name, s in self.phases.items()}
        doc: dict[str, Any] = {"wall": round(self.last - self.origin, 4), "phases": phases}
        if self.facts:
            trips = [f.round_trip for f in self.facts.values()]
            scripts = [f.script for f in self.facts.values() if f.script is not None]
            doc["facts"] = {"hosts": len(self.facts), "round_trip": _spread(trips)}
            if scripts:
                doc["facts"]["script"] = _spread(scripts)
        hosts: dict[str, dict[str, float]] = {}
        for name, seconds in self.connects.items():
            hosts.setdefault(name, {})["connect"] = round(seconds, 4)
        for name, fact in self.facts.items():
            hosts.setdefault(name, {})["round_trip"] = round(fact.round_trip, 4)
            if fact.script is not None:
                hosts[name]["script"] = round(fact.script, 4)
        if hosts:
            doc["hosts"] = hosts
        return doc


_current = Timings.from_process_start()


def current() -> Timings:
    """This process's recorder (started at import; `restart` begins it again)."""
    return _current


def restart() -> Timings:
    """A fresh recorder whose first phase began at the process start (the CLI's `main`
    calls this so a long-lived process, e.g. a test, does not add up earlier runs)."""
    global _current
    _current = Timings.from_process_start()
    return _current


def mark(phase: str) -> None:
    _current.mark(phase)
