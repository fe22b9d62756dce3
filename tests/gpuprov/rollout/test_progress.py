from __future__ import annotations

import io
import json

from rich.console import Console

from gpuprov.rollout.hooks import LocalHookRunner
from gpuprov.rollout.planner import plan_rollout
from gpuprov.rollout.progress import LiveProgress, PlainProgress, make_progress, report_json
from gpuprov.rollout.runner import run_rollout
from gpuprov.rollout.state import StateStore


def _run(support, inventory, tmp_path, progress, fail=()):
    log = tmp_path / "log"
    hosts = support.make_hosts(4)
    policy = support.hook_policy(log, canary=1, waves=("100%",), max_fail="1")
    plan = plan_rollout(hosts, policy, seed="t")
    fail = {plan.waves[1].hosts[0]} if fail else set()
    report = run_rollout(
        plan, policy, StateStore.for_inventory(inventory), work=support.ShellWork(log, fail=fail),
        gate=support.ShellGate(log), hooks=LocalHookRunner(), progress=progress,
    )  # fmt: skip
    return plan, report


def test_live_table_on_a_terminal(support, inventory, tmp_path):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=140)
    progress = make_progress(console)
    assert isinstance(progress, LiveProgress)
    plan, report = _run(support, inventory, tmp_path, progress, fail=True)
    out = buf.getvalue()
    for name in plan.host_names:
        assert name in out
    assert "wave 1" in out and "Unable to locate package" in out
    assert "rollout 1 completed" in out


def test_plain_lines_when_piped(support, inventory, tmp_path):
    buf = io.StringIO()
    progress = make_progress(Console(file=buf, force_terminal=False))
    assert isinstance(progress, PlainProgress) and not isinstance(progress, LiveProgress)
    plan, report = _run(support, inventory, tmp_path, progress, fail=True)
    lines = buf.getvalue().splitlines()
    assert "\x1b[" not in buf.getvalue()
    canary = plan.waves[0].hosts[0]
    assert any(line.endswith(f"canary: 1 hosts: {canary}") for line in lines)
    assert any(f"{canary}: running (install driver)" in line for line in lines)
    assert any("wave 1: ok, 1 failed (allowed 1)" in line for line in lines)
    failed = plan.waves[1].hosts[0]
    assert any(
        f"failed {failed} [wave 1] at install driver: E: Unable to locate package" in line
        for line in lines
    )

    data = json.loads(json.dumps(report_json(report)))
    assert data["status"] == "completed" and data["exit_code"] == 1
    assert data["failed"] == [
        {"host": failed, "wave": "wave 1", "step": "install driver",
         "error": "E: Unable to locate package nvidia-driver-580\n"}
    ]  # fmt: skip
    assert [w["name"] for w in data["waves"]] == ["canary", "wave 1"]
