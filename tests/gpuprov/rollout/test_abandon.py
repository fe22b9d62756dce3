"""Abandoning an unfinished rollout (issue 13, item 9): gated hosts are undrained, the
others listed as drained, and a drained host is never taken for converged."""

from __future__ import annotations

from pathlib import Path

from gpuprov.engine.plan import HostPlan, Plan
from gpuprov.inventory.model import RolloutPolicy
from gpuprov.rollout.abandon import abandon_rollout
from gpuprov.rollout.hooks import LocalHookRunner
from gpuprov.rollout.planner import RolloutPlan, Wave
from gpuprov.rollout.state import StateStore
from gpuprov.rollout.wave_work import split

PLAN = RolloutPlan(
    waves=(Wave(0, "canary", ("gpu000",), True), Wave(1, "wave 1", ("gpu001", "gpu002", "gpu003"))),
    skipped=(),
    seed="s",
)


def interrupted(inventory: Path) -> tuple[StateStore, int]:
    """gpu000 done, gpu001 failed its gate, gpu002 gated but not undrained, gpu003 pending."""
    store = StateStore.for_inventory(inventory)
    rid = store.create_rollout(PLAN)
    store.set_host(rid, "gpu000", "done")
    store.set_host(rid, "gpu001", "failed", step="gate", error="nvidia-smi failed")
    store.set_host(rid, "gpu002", "draining")
    store.set_host(rid, "gpu002", "undraining", step="undrain")
    store.set_rollout(rid, "interrupted", "interrupted (SIGINT)")
    return store, rid


def test_abandon_undrains_gated_hosts_and_lists_the_rest(inventory, tmp_path, support):
    store, rid = interrupted(inventory)
    assert store.drained_hosts() == {"gpu001": "failed", "gpu002": "undraining"}
    log = tmp_path / "hooks.log"
    hosts = {h.name: h for h in support.make_hosts(4)}
    report = abandon_rollout(store, rid, support.hook_policy(log), LocalHookRunner(), hosts)
    assert log.read_text() == "undrain gpu002\n"  # only the host whose gates passed
    assert report.undrained == ["gpu002"]
    assert list(report.still_drained) == ["gpu001"]
    assert "it failed; the next apply runs it again" in report.still_drained["gpu001"]
    assert store.latest_resumable() is None and store.latest().status == "abandoned"
    assert store.drained_hosts() == {"gpu001": "failed"}


def test_failed_undrain_on_abandon_stays_drained(inventory, support):
    store, rid = interrupted(inventory)
    policy = RolloutPolicy(undrain="echo scontrol: slurmctld down >&2; exit 1")
    hosts = {h.name: h for h in support.make_hosts(4)}
    report = abandon_rollout(store, rid, policy, LocalHookRunner(), hosts)
    assert report.undrained == []
    assert (
        "undrain hook failed (exit 1): scontrol: slurmctld down" in report.still_drained["gpu002"]
    )
    assert set(store.drained_hosts()) == {"gpu001", "gpu002"}


def test_host_gone_from_inventory_is_left_to_the_operator(inventory, support):
    store, rid = interrupted(inventory)
    hosts = {h.name: h for h in support.make_hosts(1)}  # gpu001.. no longer in the inventory
    report = abandon_rollout(store, rid, RolloutPolicy(), LocalHookRunner(), hosts)
    assert "no longer in the inventory: undrain it by hand" in report.still_drained["gpu001"]


def test_later_success_clears_a_drained_host(inventory):
    store, _ = interrupted(inventory)
    store.set_rollout(1, "abandoned")
    rid = store.create_rollout(RolloutPlan(waves=(Wave(0, "canary", ("gpu001",), True),), seed="t"))
    store.set_host(rid, "gpu001", "done")
    assert store.drained_hosts() == {"gpu002": "undraining"}


def test_a_drained_host_is_never_converged(support):
    hosts = support.make_hosts(3)
    plan = Plan({h.name: HostPlan(h.name) for h in hosts})  # nothing to change anywhere
    assert split(hosts, plan).converged == ["gpu000", "gpu001", "gpu002"]
    targets = split(hosts, plan, drained={"gpu001"})
    assert targets.converged == ["gpu000", "gpu002"]
    assert [h.name for h in targets.gpu] == ["gpu000", "gpu001", "gpu002"]
