"""The live progress table at site scale: linear work per transition, bounded by the
terminal's height on screen (counted in lines run, not timed)."""

from __future__ import annotations

import io

from rich.console import Console

from gpuprov.rollout.planner import Wave
from gpuprov.rollout.progress import LiveProgress

from .opcount import lines_run

PROGRESS = ("gpuprov/rollout/progress.py",)
STEPS = (
    ("draining", "drain"),
    ("running", "work"),
    ("running", "connect"),
    ("running", "plan"),
    ("running", "install driver"),
    ("gating", "gate"),
    ("undraining", "undrain"),
    ("done", "done"),
)


def live(height: int = 30) -> tuple[LiveProgress, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, height=height)
    return LiveProgress(console), buf


def one_wave(progress: LiveProgress, hosts: list[str]) -> None:
    progress.wave_started(Wave(1, "wave 1", tuple(hosts)), hosts)
    for status, step in STEPS:
        for host in hosts:
            progress.host_update(host, status, step, "")
    progress.wave_finished(Wave(1, "wave 1", tuple(hosts)), 0, 0, False)


def test_transitions_cost_the_same_whatever_the_wave_size() -> None:
    # Rebuilding the whole table on each transition: 16x the work for 4x the hosts.
    small = lines_run(PROGRESS, one_wave, live()[0], [f"h{i:03d}" for i in range(60)])
    large = lines_run(PROGRESS, one_wave, live()[0], [f"h{i:03d}" for i in range(240)])
    assert large < 5 * small, (small, large)


def test_a_wave_taller_than_the_terminal_shows_failures_first_and_counts_the_rest() -> None:
    progress, buf = live(height=30)
    hosts = [f"gpu{i:03d}" for i in range(500)]
    wave = Wave(2, "wave 2", tuple(hosts))
    progress.wave_started(wave, hosts)
    for host in hosts[:300]:
        progress.host_update(host, "done", "done", "")
    progress.host_update("gpu450", "failed", "gate", "nvidia-smi: no devices found")
    progress.host_update("gpu451", "running", "install driver", "")
    progress.wave_finished(wave, 1, 0, True)

    console = Console(file=io.StringIO(), force_terminal=False, width=120, height=30)
    with console.capture() as cap:
        console.print(progress._table())
    table = cap.get()
    assert len(table.splitlines()) <= 30
    lines = table.splitlines()
    first_host = next(i for i, line in enumerate(lines) if "gpu" in line and "hosts:" not in line)
    assert "gpu450" in lines[first_host] and "no devices found" in lines[first_host]
    assert "gpu451" in lines[first_host + 1]
    assert "500 hosts: 300 done, 1 failed, 198 pending, 1 running" in table
    assert "more" in table
    assert "gpu450" in buf.getvalue()  # the last frame stays on the terminal


def test_a_small_wave_shows_every_host_in_order() -> None:
    progress, _ = live(height=30)
    hosts = [f"gpu{i}" for i in range(5)]
    progress.wave_started(Wave(0, "canary", tuple(hosts), True), hosts)
    progress.host_update("gpu3", "failed", "work", "E: boom")
    console = Console(file=io.StringIO(), force_terminal=False, width=120, height=30)
    with console.capture() as cap:
        console.print(progress._table())
    lines = [line for line in cap.get().splitlines() if "gpu" in line]
    assert [next(h for h in hosts if h in line) for line in lines] == hosts
    assert "more" not in cap.get()
    progress.live.stop()
