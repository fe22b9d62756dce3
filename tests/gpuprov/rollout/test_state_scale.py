"""State writes at site scale: a wave's hosts enter each phase in one transaction."""

from __future__ import annotations

from pathlib import Path

from gpuprov.inventory.model import Host, RolloutPolicy
from gpuprov.rollout.hooks import LocalHookRunner
from gpuprov.rollout.planner import RolloutPlan, Wave, plan_rollout
from gpuprov.rollout.runner import HostResult, run_rollout
from gpuprov.rollout.state import StateStore


class Transactions:
    """Counts SQLite transactions from the statements a connection runs: one per statement
    outside BEGIN...COMMIT (autocommit), one per COMMIT."""

    def __init__(self) -> None:
        self.count = 0
        self._open = False

    def __call__(self, sql: str) -> None:
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if word == "BEGIN":
            self._open = True
        elif word in ("COMMIT", "END", "ROLLBACK"):
            self._open = False
            self.count += word != "ROLLBACK"
        elif word in ("INSERT", "UPDATE", "DELETE", "REPLACE") and not self._open:
            self.count += 1


def ok_for_all(hosts: list[Host], report=None) -> dict[str, HostResult]:
    return {h.name: HostResult(True, "done") for h in hosts}


def test_a_wave_phase_is_one_transaction_not_one_per_host(support, inventory: Path) -> None:
    hosts = support.make_hosts(120, racks=10)
    policy = RolloutPolicy(canary=1, waves=("50%", "100%"), gates=(), drain="true", undrain="true")
    plan = plan_rollout(hosts, policy, seed="t")
    store = StateStore.for_inventory(inventory)
    tx = Transactions()
    store.db.set_trace_callback(tx)
    report = run_rollout(
        plan, policy, store, work=ok_for_all, gate=ok_for_all, hooks=LocalHookRunner()
    )
    assert report.status == "completed"
    # drain, work, gate, undrain, done: one each per wave, plus the rollout's own rows.
    assert tx.count <= 8 * len(plan.waves) + 10, (tx.count, len(plan.waves))
    done = StateStore(store.path, store.inventory).host_statuses(report.rollout_id)
    assert set(done.values()) == {"done"} and len(done) == 120


def test_set_hosts_moves_many_hosts_at_once_visible_to_readers(inventory: Path) -> None:
    store = StateStore.for_inventory(inventory)
    plan = RolloutPlan(waves=(Wave(0, "wave 1", ("a", "b", "c")),))
    rid = store.create_rollout(plan)
    other = StateStore(store.path, store.inventory)
    store.set_hosts(rid, ["a", "b"], "draining")
    assert other.host_statuses(rid) == {"a": "draining", "b": "draining", "c": "pending"}
    store.set_hosts(rid, ["a", "b"], "running", step="work")
    store.set_hosts(rid, ["a"], "done")
    rows = {h.host: h for h in other.status(rid).hosts}
    assert rows["a"].status == "done" and rows["a"].finished and rows["a"].attempts == 1
    assert (rows["b"].status, rows["b"].step) == ("running", "work")
