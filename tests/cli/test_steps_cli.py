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


def halted_rollout(tmp_path: Path, steps: tuple[str, ...] | None) -> Path:
    """A copy of the site template with a halted rollout of its state, started with
    `steps` (None: every step)."""
    from gpuprov.rollout.planner import RolloutPlan, Wave
    from gpuprov.rollout.state import StateStore

    inventory = tmp_path / "prod.yaml"
    inventory.write_text((REPO / "inventories" / "prod.yaml").read_text())
    store = StateStore.for_inventory(inventory)
    plan = RolloutPlan(waves=(Wave(0, "canary", ("gpu001",), True),), seed="s", steps=steps)
    rid = store.create_rollout(plan)
    store.set_rollout(rid, "halted", "gate failed")
    assert store.load_plan(rid).steps == steps  # stored with the plan
    store.close()
    return inventory


def test_resume_keeps_the_steps_the_rollout_started_with(tmp_path: Path) -> None:
    inventory = halted_rollout(tmp_path, ("cuda",))
    proc = gpuprov("apply", str(inventory), "--resume", "--yes", "--only", "driver")
    assert proc.returncode == 2, proc.stderr
    assert (
        "rollout 1 runs cuda; --resume continues it with the same steps (drop --only driver)"
        in (proc.stderr)
    )
    assert "Traceback" not in proc.stderr


def test_resume_of_a_full_rollout_refuses_a_selection(tmp_path: Path) -> None:
    inventory = halted_rollout(tmp_path, None)
    proc = gpuprov("apply", str(inventory), "--resume", "--yes", "--skip", "dcgm")
    assert proc.returncode == 2 and "rollout 1 runs every step" in proc.stderr


def test_a_resume_without_flags_runs_the_stored_steps(tmp_path: Path) -> None:
    from gpuprov.cli.app import App
    from gpuprov.cli.apply.staged import Staged
    from gpuprov.deploys.steps import parse

    from gpuprov.inventory.loader import load_inventory
    from gpuprov.rollout.planner import RolloutPlan

    inventory = halted_rollout(tmp_path, ("cuda",))
    run = Staged(App(), load_inventory(inventory), inventory, None, output="table", yes=True,
                 accept_new=False)  # fmt: skip
    run.steps = parse()  # no --only/--skip on the command line
    stored = run.resumed_steps(RolloutPlan(waves=(), steps=("cuda",)), 1)
    assert stored.steps == ("cuda",) and not stored.runs("driver")
    assert run.resumed_steps(RolloutPlan(waves=()), 1).everything
