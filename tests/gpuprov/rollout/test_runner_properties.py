"""Runner invariants over generated host sets, policies and failure patterns.

Work, gate and hooks here are in-process Python (fast enough for hypothesis); the same
rules are checked with real subprocess hooks and work in test_runner.py.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuprov.errors import ExitCode
from gpuprov.inventory.model import RolloutPolicy
from gpuprov.rollout.hooks import HookResult
from gpuprov.rollout.planner import allowed_failures, plan_rollout
from gpuprov.rollout.runner import HostResult, run_rollout
from gpuprov.rollout.state import StateStore


class Recorder:
    """Hooks, work and gate that record (event, host) and fail the hosts they are told to."""

    def __init__(self, drain_fail, work_fail, gate_fail, silent):
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.drain_fail, self.work_fail, self.gate_fail, self.silent = (
            drain_fail,
            work_fail,
            gate_fail,
            silent,
        )

    def note(self, event, host):
        with self.lock:
            self.events.append((event, host))

    def run(self, template, host):  # HookRunner
        event = template.split()[0]
        self.note(event, host.name)
        ok = not (event == "drain" and host.name in self.drain_fail)
        return HookResult(
            ok, f"{template} {host.name}", 0 if ok else 1, "" if ok else "drain refused"
        )

    def work(self, hosts, report):
        out = {}
        for h in hosts:
            self.note("work", h.name)
            report(h.name, "install")
            if h.name not in self.silent:
                out[h.name] = HostResult(h.name not in self.work_fail, "install", "boom")
        return out

    def gate(self, hosts):
        for h in hosts:
            self.note("gate", h.name)
        return {h.name: HostResult(h.name not in self.gate_fail, "gate", "sick") for h in hosts}


@st.composite
def scenarios(draw, support):
    n = draw(st.integers(1, 14))
    hosts = support.make_hosts(n, racks=draw(st.integers(1, 4)))
    names = [h.name for h in hosts]
    subset = st.sets(st.sampled_from(names), max_size=3)
    policy = RolloutPolicy(
        canary=draw(st.sampled_from([0, 1, 2, "10%"])),
        waves=draw(st.sampled_from([("100%",), ("30%", "100%"), ("2", "50%", "100%")])),
        max_fail=draw(st.sampled_from(["0", "1", "20%", "50%"])),
        max_per_domain=draw(st.sampled_from([None, 1, 2])),
        drain="drain {host}",
        undrain="undrain {host}",
    )
    return hosts, policy, draw(subset), draw(subset), draw(subset), draw(subset)


def test_runner_invariants(support):
    @settings(max_examples=40, deadline=None)
    @given(scenarios(support))
    def check(case):
        hosts, policy, drain_fail, work_fail, gate_fail, silent = case
        rec = Recorder(drain_fail, work_fail, gate_fail, silent)
        plan = plan_rollout(hosts, policy, seed="p")
        with tempfile.TemporaryDirectory() as tmp:
            inv = Path(tmp) / "inv.yaml"
            inv.write_text("x")
            store = StateStore.for_inventory(inv)
            report = run_rollout(plan, policy, store, work=rec.work, gate=rec.gate, hooks=rec)
            store.close()

        seen: dict[str, list[str]] = {}
        for event, host in rec.events:
            seen.setdefault(host, []).append(event)
        bad = drain_fail | work_fail | gate_fail | silent

        # expected outcome, wave by wave
        halted_at = None
        for wave in plan.waves:
            failures = sum(n in bad for n in wave.hosts)
            allowed = 0 if wave.canary else allowed_failures(len(wave.hosts), policy.max_fail)
            if failures > allowed:
                halted_at = wave.index
                break
        ran = {
            n
            for w in plan.waves[: (halted_at if halted_at is not None else len(plan.waves)) + 1]
            for n in w.hosts
        }
        assert set(seen) == ran  # later waves never started
        assert report.status == ("halted" if halted_at is not None else "completed")

        for name, seq in seen.items():
            assert seq[0] == "drain"
            if name in drain_fail:
                assert seq == ["drain"]  # not touched after a failed drain
            elif name in work_fail or name in silent:
                assert seq == ["drain", "work"]  # failed: stays drained
            elif name in gate_fail:
                assert seq == ["drain", "work", "gate"]
            else:
                assert seq == ["drain", "work", "gate", "undrain"]
        assert set(report.done) == ran - bad
        assert {f.host for f in report.failed} == ran & bad
        assert set(report.pending) == set(plan.host_names) - ran
        expected = (
            ExitCode.ROLLOUT_HALTED
            if halted_at is not None
            else (ExitCode.HOSTS_FAILED if ran & bad else 0)
        )
        assert report.exit_code == expected

    check()
