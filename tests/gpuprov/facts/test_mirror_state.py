"""The mirror host's NodeFacts section: its units asked with one `systemctl show` where
systemd runs, unit by unit where it does not, the same answer either way. The `systemctl`
answers are real, captured on the converged lab's mirror01 (`python -m
benchmarks.noop_breakdown --lab --capture tests/fixtures/systemctl`); the section runs in
dash with a `systemctl` on PATH that replays them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from gpuprov.facts import mirror_state
from gpuprov.paths import MIRROR_UNITS, PACKAGED_UNITS

SYSTEMCTL = Path(__file__).parents[2] / "fixtures" / "systemctl"
UNITS = [u.removesuffix(".service") for u in (*MIRROR_UNITS, *PACKAGED_UNITS)]


def captured() -> dict[str, tuple[str, str]]:
    """What `systemctl is-active` / `is-enabled` said on mirror01, unit by unit."""
    active = (SYSTEMCTL / "mirror-is-active.txt").read_text().split()
    enabled = (SYSTEMCTL / "mirror-is-enabled.txt").read_text().split()
    assert len(active) == len(enabled) == len(UNITS)
    return {u: (a, e) for u, a, e in zip(UNITS, active, enabled, strict=True)}


def units_seen(tmp_path: Path, systemctl: str) -> dict[str, tuple[str, str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "systemctl"
    tool.write_text("#!/bin/sh\n" + systemctl)
    tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    proc = subprocess.run(["dash", "-c", mirror_state.command()], capture_output=True,
                          text=True, env=env, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return mirror_state.parse(proc.stdout).units


def test_units_from_one_systemctl_show(tmp_path: Path) -> None:
    """One `systemctl show` for the five units (any other systemctl call fails here)."""
    show = SYSTEMCTL / "show-mirror-units.txt"
    units = units_seen(
        tmp_path,
        f'case "$1" in show) cat "{show}" ;; *) echo "unexpected: $*" >&2; exit 9 ;; esac\n',
    )
    assert units == captured()
    assert units["gpuprov-apt"] == ("active", "enabled")
    assert units["nginx"] == ("inactive", "masked")


def test_units_one_by_one_where_show_fails(tmp_path: Path) -> None:
    """No systemd running (a light host's chroot): `show` fails; is-active / is-enabled
    answer unit by unit, as mirror01 answered them."""
    answers = captured()
    cases = "".join(
        f"  {verb}:{u}.service) echo {answers[u][i]} ;;\n"
        for u in UNITS
        for i, verb in enumerate(("is-active", "is-enabled"))
    )
    units = units_seen(
        tmp_path,
        'case "$1" in show) echo "System has not been booted with systemd" >&2; exit 1 ;; esac\n'
        f'case "$1:$2" in\n{cases}  *) exit 9 ;;\nesac\n',
    )
    assert units == answers
