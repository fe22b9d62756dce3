from __future__ import annotations

import os
import signal

import pytest

from gpuprov.errors import ExitCode, InputError
from gpuprov.rollout.hooks import LocalHookRunner
from gpuprov.rollout.planner import plan_rollout
from gpuprov.rollout.progress import PlainProgress
from gpuprov.rollout.runner import run_rollout
from gpuprov.rollout.state import StateStore


def events(support, log):
    """host -> the ordered list of things that happened to it."""
    seen: dict[str, list[str]] = {}
    for what, host in support.log_lines(log):
        seen.setdefault(host, []).append(what)
    return seen


def run(support, inventory, hosts, policy, log, *, fail=(), gate_fail=(), silent=(), **kw):
    plan = plan_rollout(hosts, policy, seed="t")
    store = StateStore.for_inventory(inventory)
    report = run_rollout(
        plan,
        policy,
        store,
        work=support.ShellWork(log, fail=set(fail), silent=set(silent)),
        gate=support.ShellGate(log, fail=set(gate_fail)),
        hooks=LocalHookRunner(),
        **kw,
    )
    return plan, store, report


def test_clean_rollout_drains_works_gates_undrains_in_order(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts = support.make_hosts(6)
    policy = support.hook_policy(log, canary=1, waves=("50%", "100%"), max_per_domain=1)
    plan, store, report = run(support, inventory, hosts, policy, log)
    assert report.status == "completed" and report.exit_code == ExitCode.OK
    assert sorted(report.done) == sorted(h.name for h in hosts)
    for host, seq in events(support, log).items():
        assert seq == ["drain", "work-start", "work-done", "gate", "undrain"], host
    # waves ran in plan order: every host of wave k finished before wave k+1 began
    wave_of = {n: w.index for w in plan.waves for n in w.hosts}
    lines = support.log_lines(log)
    for i, (what, host) in enumerate(lines):
        if what == "drain":
            assert all(wave_of[h] <= wave_of[host] for _, h in lines[:i])
    st = store.status(report.rollout_id)
    assert {h.status for h in st.hosts} == {"done"} and all(h.attempts == 1 for h in st.hosts)


def test_failing_canary_stops_everything(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts = support.make_hosts(10)
    policy = support.hook_policy(log, canary=1, waves=("100%",), max_fail="50%")
    canary = plan_rollout(hosts, policy, seed="t").waves[0].hosts[0]
    _, store, report = run(support, inventory, hosts, policy, log, fail={canary})
    assert report.status == "halted" and report.exit_code == ExitCode.ROLLOUT_HALTED
    assert set(events(support, log)) == {canary}
    assert [f.host for f in report.failed] == [canary]
    assert report.failed[0].step == "install driver"
    assert "Unable to locate package" in report.failed[0].error
    assert len(report.pending) == 9 and "canary allows none" in report.reason
    assert [w.status for w in report.waves] == ["halted", "pending"]


def _two_waves_of_ten(support, log):
    hosts = support.make_hosts(20)
    policy = support.hook_policy(log, canary=0, waves=("50%", "100%"), max_fail="10%")
    plan = plan_rollout(hosts, policy, seed="t")
    assert [len(w.hosts) for w in plan.waves] == [10, 10]
    return hosts, policy, plan


def test_two_of_ten_failing_with_max_fail_10_percent_halts(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts, policy, plan = _two_waves_of_ten(support, log)
    first, second = plan.waves
    bad = {first.hosts[2], first.hosts[7]}
    _, store, report = run(support, inventory, hosts, policy, log, fail=bad)
    assert report.status == "halted"
    assert "2 of 10 hosts failed" in report.reason and "allows 1" in report.reason
    seen = events(support, log)
    assert not set(second.hosts) & set(seen), "a later wave started after the halt"
    assert set(report.pending) == set(second.hosts)
    assert {f.host for f in report.failed} == bad
    for name in bad:  # never undrain a failed host
        assert seen[name] == ["drain", "work-start"]
    for name in set(first.hosts) - bad:  # the healthy ones in the halted wave go back in service
        assert seen[name][-1] == "undrain"


def test_one_of_ten_failing_with_max_fail_10_percent_continues(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts, policy, plan = _two_waves_of_ten(support, log)
    bad = plan.waves[0].hosts[0]
    _, _, report = run(support, inventory, hosts, policy, log, fail={bad})
    assert report.status == "completed"
    assert [f.host for f in report.failed] == [bad] and len(report.done) == 19
    assert report.exit_code == ExitCode.HOSTS_FAILED
    assert report.waves[0].failures == 1 and report.waves[0].allowed == 1


def test_gate_failure_and_vanished_host_fail_and_stay_drained(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts = support.make_hosts(4)
    policy = support.hook_policy(log, canary=0, waves=("100%",), max_fail="3")
    gate_bad, gone = hosts[0].name, hosts[1].name
    _, store, report = run(
        support, inventory, hosts, policy, log, gate_fail={gate_bad}, silent={gone}
    )
    seen = events(support, log)
    assert seen[gate_bad] == ["drain", "work-start", "work-done", "gate"]
    assert seen[gone] == ["drain", "work-start", "work-done"]
    failed = {f.host: f for f in report.failed}
    assert (
        failed[gate_bad].step == "gate nvidia-smi"
        and "No devices were found" in failed[gate_bad].error
    )
    assert "unreachable or vanished" in failed[gone].error
    assert report.status == "completed" and len(report.done) == 2


def test_failed_drain_means_the_host_is_not_touched(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts = support.make_hosts(3)
    policy = support.hook_policy(log, canary=0, waves=("100%",), max_fail="1")
    policy = type(policy)(
        **{
            **policy.__dict__,
            "drain": f"test {{host}} != {hosts[1].name} && echo drain {{host}} >> {log}",
        }
    )
    _, _, report = run(support, inventory, hosts, policy, log)
    assert hosts[1].name not in events(support, log)
    assert report.failed[0].host == hosts[1].name and report.failed[0].step == "drain"


def test_host_missing_from_inventory_counts_as_failed(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts = support.make_hosts(3)
    policy = support.hook_policy(log, canary=0, waves=("100%",), max_fail="0")
    plan = plan_rollout(hosts, policy, seed="t")
    store = StateStore.for_inventory(inventory)
    report = run_rollout(
        plan, policy, store, work=support.ShellWork(log), gate=support.ShellGate(log),
        hooks=LocalHookRunner(), hosts={h.name: h for h in hosts[:2]},
    )  # fmt: skip
    assert report.status == "halted"
    assert report.failed[0].host == hosts[2].name and report.failed[0].step == "lookup"


def test_declined_approval_interrupts_and_resume_continues(support, inventory, tmp_path, capsys):
    log = tmp_path / "log"
    hosts = support.make_hosts(5)
    policy = support.hook_policy(log, canary=1, waves=("100%",))
    asked = []
    _, store, report = run(
        support, inventory, hosts, policy, log, approve=lambda w: asked.append(w.name) or False,
        progress=PlainProgress(),
    )  # fmt: skip
    assert asked == ["wave 1"] and report.status == "interrupted"
    assert report.exit_code == ExitCode.INTERRUPTED and len(report.done) == 1
    assert "rollout 1 interrupted: wave 1 was not approved" in capsys.readouterr().out
    record = store.latest_resumable()
    assert record is not None and record.id == report.rollout_id
    log.unlink()
    _, _, again = run(
        support, inventory, hosts, policy, log, resume=record.id, approve=lambda w: True
    )
    assert again.status == "completed" and len(again.done) == 5
    assert set(events(support, log)) == set(h.name for h in hosts) - set(report.done)


def test_resume_refuses_unknown_completed_or_foreign_rollouts(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts = support.make_hosts(2)
    policy = support.hook_policy(log, canary=0)
    _, store, report = run(support, inventory, hosts, policy, log)
    assert report.status == "completed" and store.latest_resumable() is None
    for rid, message in [(99, "no rollout 99"), (report.rollout_id, "is completed")]:
        with pytest.raises(InputError, match=message):
            run(support, inventory, hosts, policy, log, resume=rid)
    other = tmp_path / "other.yaml"
    other.write_text("x")
    foreign = StateStore(store.path, other)
    with pytest.raises(InputError, match="is of .*cluster.yaml"):
        run_rollout(
            plan_rollout(hosts, policy), policy, foreign, work=support.ShellWork(log),
            gate=support.ShellGate(log), hooks=LocalHookRunner(), resume=report.rollout_id,
        )  # fmt: skip
    assert len(store.history()) == 1  # nothing recorded by the refused attempts


def test_sigint_during_work_lets_the_step_finish_then_stops(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts = support.make_hosts(4)
    policy = support.hook_policy(log, canary=1, waves=("100%",))
    inner = support.ShellWork(log)
    # Whatever handler was there before (earlier tests may have installed their own).
    before = signal.getsignal(signal.SIGINT)

    def work(wave_hosts, report):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the wave's work runs
        return inner(wave_hosts, report)

    plan = plan_rollout(hosts, policy, seed="t")
    store = StateStore.for_inventory(inventory)
    report = run_rollout(
        plan, policy, store, work=work, gate=support.ShellGate(log), hooks=LocalHookRunner()
    )
    assert report.status == "interrupted" and report.exit_code == ExitCode.INTERRUPTED
    canary = plan.waves[0].hosts[0]
    # the work in flight finished; nothing after it (gate, undrain, later waves) started
    assert events(support, log) == {canary: ["drain", "work-start", "work-done"]}
    assert store.host_statuses(report.rollout_id)[canary] == "running"  # re-run on resume
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_sigint_at_the_approval_prompt_interrupts_at_once(support, inventory, tmp_path):
    log = tmp_path / "log"
    hosts = support.make_hosts(4)
    policy = support.hook_policy(log, canary=1, waves=("100%",))

    def approve(wave):
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the prompt should have been interrupted")

    _, store, report = run(support, inventory, hosts, policy, log, approve=approve)
    assert report.status == "interrupted" and "SIGINT" in report.reason
    assert len(report.done) == 1 and len(report.pending) == 3
