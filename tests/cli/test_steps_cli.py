"""`plan|apply --only/--skip` on the command line: bad step names fail in a second, before
any connection, with exit 2 and no traceback. (What a selection plans is
tests/deploys/test_step_selection.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def gpuprov(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_unknown_step_is_bad_input(command: str) -> None:
    extra = ("--yes",) if command == "apply" else ()
    proc = gpuprov(command, "inventories/example.yaml", "--only", "cuda,drivr", *extra)
    assert proc.returncode == 2, proc.stderr
    assert "--only drivr: not a step; did you mean 'driver'?" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_skipping_everything_is_bad_input() -> None:
    steps = "mirror-client,nouveau,driver,fabricmanager,cuda,container,dcgm"
    proc = gpuprov("plan", "inventories/example.yaml", "--skip", steps)
    assert proc.returncode == 2 and "leave no step to run" in proc.stderr


def test_help_lists_the_steps() -> None:
    proc = gpuprov("apply", "--help")
    assert proc.returncode == 0
    assert "--only STEP[,STEP]" in proc.stdout and "fabricmanager" in proc.stdout
