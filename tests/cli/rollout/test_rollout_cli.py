from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from gpuprov.cli import gpuprov

from gpuprov.rollout.hooks import LocalHookRunner
from gpuprov.rollout.planner import plan_rollout
from gpuprov.rollout.runner import run_rollout
from gpuprov.rollout.state import StateStore

SUPPORT = Path(__file__).parents[2] / "gpuprov" / "rollout" / "support.py"


def _support():
    if "rollout_support" not in sys.modules:
        spec = importlib.util.spec_from_file_location("rollout_support", SUPPORT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["rollout_support"] = module
        spec.loader.exec_module(module)
    return sys.modules["rollout_support"]


def cli(*args: str):
    # wide, so rich tables do not fold the error column mid-word
    return CliRunner(env={"COLUMNS": "200"}).invoke(gpuprov, list(args), catch_exceptions=False)


@pytest.fixture
def rolled_out(tmp_path: Path) -> Path:
    """An inventory with two real rollouts recorded: one halted (canary failed), one completed."""
    support = _support()
    inv = tmp_path / "site.yaml"
    inv.write_text("cluster: {name: site}\n")
    log = tmp_path / "log"
    hosts = support.make_hosts(4)
    policy = support.hook_policy(log, canary=1, waves=("100%",))
    plan = plan_rollout(hosts, policy, seed="site")
    store = StateStore.for_inventory(inv)
    for fail in ({plan.waves[0].hosts[0]}, set()):
        run_rollout(
            plan, policy, store, work=support.ShellWork(log, fail=fail),
            gate=support.ShellGate(log), hooks=LocalHookRunner(),
        )  # fmt: skip
    store.close()
    return inv


def test_history_lists_both_rollouts(rolled_out: Path):
    result = cli("rollout", "history", str(rolled_out), "--output", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["id"], r["status"]) for r in rows] == [(1, "halted"), (2, "completed")]
    table = cli("rollout", "history", str(rolled_out))
    assert "halted" in table.output and "completed" in table.output


def test_status_shows_failed_host_step_and_error(rolled_out: Path):
    result = cli("rollout", "status", str(rolled_out), "--id", "1", "--output", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["rollout"]["status"] == "halted"
    failed = [h for h in data["hosts"] if h["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["step"] == "install driver"
    assert "Unable to locate package" in failed[0]["error"]
    text = cli("rollout", "status", str(rolled_out), "--id", "1").output
    assert "canary" in text and "Unable to locate package" in text
    latest = json.loads(cli("rollout", "status", str(rolled_out), "--output", "json").output)
    assert latest["rollout"]["id"] == 2


def test_status_without_state_or_with_unknown_id_is_bad_input(tmp_path: Path, rolled_out: Path):
    result = cli("rollout", "status", str(tmp_path / "none.yaml"))
    assert result.exit_code == 2 and "no rollout state" in result.output
    result = cli("rollout", "status", str(rolled_out), "--id", "99")
    assert result.exit_code == 2 and "no rollout 99" in result.output


def test_plan_from_inventory(tmp_path: Path):
    inv = tmp_path / "inv.yaml"
    hosts = "\n".join(
        f"      gpu{i:02d}: {{address: 10.0.{i // 4}.{i}, rack: r{i // 4}}}" for i in range(12)
    )
    inv.write_text(
        textwrap.dedent("""\
        cluster:
          name: plan-test
          stack:
            driver: {branch: "580", version: "580.95.05"}
          rollout:
            canary: 1
            waves: ["50%", "100%"]
            max_fail: "0"
            failure_domain: rack
            max_per_domain: 1
        groups:
          hgx:
            profile: hgx-h100-8
            hosts:
        """)
        + hosts
        + "\n"
    )
    result = cli("rollout", "plan", str(inv), "--output", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["waves"][0]["name"] == "canary"
    assert sorted(h for w in data["waves"] for h in w["hosts"]) == [
        f"gpu{i:02d}" for i in range(12)
    ]
    rack = {f"gpu{i:02d}": i // 4 for i in range(12)}
    for wave in data["waves"]:
        assert len({rack[h] for h in wave["hosts"]}) == len(wave["hosts"])  # one per rack
    assert cli("rollout", "plan", str(inv), "--output", "json").output == result.output
    table = cli("rollout", "plan", str(inv))
    assert "canary" in table.output and "12 hosts in" in table.output
    inv.write_text(inv.read_text().replace('max_fail: "0"', 'max_fail: "lots"'))
    bad = cli("rollout", "plan", str(inv))
    assert bad.exit_code == 2 and str(inv) in bad.output
