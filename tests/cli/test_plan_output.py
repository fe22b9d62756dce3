"""What plan/apply print about refused hosts, on Plan data (no host needed)."""

from __future__ import annotations

import pytest
from gpuprov.cli.app import App
from gpuprov.cli.plan import excluded_exit_code, nothing_would_change, show_plan
from gpuprov.cli.rollout.plan import excluded_text

from gpuprov.engine.plan import HostPlan, Plan
from gpuprov.engine.refusal import HostRefused, Refusal
from gpuprov.errors import ExitCode
from gpuprov.inventory.model import RolloutPolicy
from gpuprov.rollout.planner import plan_rollout

REFUSALS = [
    Refusal("the inventory says stack.os ubuntu2204, the host runs debian12", "fix stack.os", "stack_os"),
    Refusal("PCI bus shows no NVIDIA GPU", "reseat the GPUs", "gpus"),
]  # fmt: skip


def refused(name: str, refusals: list[Refusal]) -> HostPlan:
    return HostPlan(name, "refused", error=str(HostRefused.every(refusals)), refusals=refusals)


def test_every_refusal_of_a_host_is_printed(capsys):
    plan = Plan({
        "a": refused("a", REFUSALS),
        "b": refused("b", REFUSALS[1:]),
        "c": HostPlan("c", "refused", error="daemon.json", refusals=[Refusal("daemon.json")]),
        "d": HostPlan("d", "unreachable", error="d (10.0.0.4:22): unreachable"),
    })  # fmt: skip
    show_plan(App(), plan)
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "a: refused: 2 problems, most fundamental first",
        "  [stack_os] the inventory says stack.os ubuntu2204, the host runs debian12 — fix stack.os",
        "  [gpus] PCI bus shows no NVIDIA GPU — reseat the GPUs",
        "b: refused: [gpus] PCI bus shows no NVIDIA GPU — reseat the GPUs",
        "c: refused: daemon.json",
    ]  # d's one line was printed when connecting
    assert "Plan: 0 changes on 0 of 0 ready hosts; 4 blocked" in out
    assert "gpuprov_preflight_ignore" in out


def test_no_ignore_hint_without_a_code(capsys):
    plan = Plan({"c": HostPlan("c", "refused", error="x", refusals=[Refusal("x")])})
    show_plan(App(), plan)
    assert "gpuprov_preflight_ignore" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("statuses", "up_to_date", "line"),
    [
        (["refused"] * 3 + ["unreachable"], 0, "nothing would change: 3 hosts refused, 1 unreachable"),
        (["refused"], 0, "nothing would change: 1 host refused"),
        (["unreachable"], 2, "nothing would change: 1 host unreachable, 2 up to date"),
        (["failed", "refused"], 0, "nothing would change: 1 host refused, 1 failed"),
    ],
)  # fmt: skip
def test_nothing_would_change_in_one_line(statuses, up_to_date, line):
    plan = Plan({f"h{i}": HostPlan(f"h{i}", s) for i, s in enumerate(statuses)})
    assert nothing_would_change(plan, up_to_date) == line


def test_left_out_hosts_fail_an_otherwise_good_run():
    def rplan(excluded: dict[str, str]):
        return plan_rollout([], RolloutPolicy(), excluded=excluded)

    assert excluded_exit_code(rplan({})) == ExitCode.OK and excluded_text(rplan({})) == ""
    assert excluded_exit_code(rplan({"a": "unreachable"})) == ExitCode.CONNECT_FAILED
    both = rplan({"a": "unreachable", "b": "refused"})
    assert excluded_exit_code(both) == ExitCode.HOSTS_FAILED
    assert excluded_text(both) == "; not in any wave: 1 refused, 1 unreachable"
