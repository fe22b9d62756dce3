"""Abandoning an interrupted or halted rollout instead of resuming it.

A new `apply` refuses while a rollout of the same inventory can be resumed: the new dry
run would find a host that passed its deploy and gates but was never undrained
"converged" and skip it, and the resume would no longer be offered, so the host would
stay drained for good. Abandoning settles the old rollout first: hosts whose gates
passed (status `undraining`) get their undrain hook now; every other host the old
rollout (or an earlier one) left drained is listed, with what happened to it, and
stays drained until a rollout runs it through drain, deploy, gates and undrain again
(the next apply does: a drained host is never "converged", `StateStore.drained_hosts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gpuprov.inventory.model import Host, RolloutPolicy
from gpuprov.rollout.hooks import HookRunner
from gpuprov.rollout.state import StateStore

WHY = {
    "draining": "its drain hook was cut short",
    "running": "its deploy was cut short",
    "gating": "its health gates were cut short",
    "undraining": "its undrain hook did not pass",
    "failed": "it failed",
}


@dataclass
class AbandonReport:
    rollout_id: int
    undrained: list[str] = field(default_factory=list)
    still_drained: dict[str, str] = field(default_factory=dict)  # host -> why, what next

    def to_dict(self) -> dict[str, object]:
        return {
            "rollout_id": self.rollout_id,
            "undrained": self.undrained,
            "still_drained": self.still_drained,
        }


def abandon_rollout(
    store: StateStore,
    rollout_id: int,
    policy: RolloutPolicy,
    hooks: HookRunner,
    hosts: Mapping[str, Host],
) -> AbandonReport:
    """Undrain the old rollout's gated hosts, mark it `abandoned`, list what stays drained.

    The caller holds the store's lock."""
    record = store.status(rollout_id)
    if record is None:
        raise KeyError(rollout_id)
    report = AbandonReport(rollout_id)
    failed_undrain: dict[str, str] = {}
    for run in record.hosts:
        if run.status != "undraining" or run.host not in hosts:
            continue
        if policy.undrain is not None:
            result = hooks.run(policy.undrain, hosts[run.host])
            if not result.ok:
                rc = "timed out" if result.returncode is None else f"exit {result.returncode}"
                failed_undrain[run.host] = f"undrain hook failed ({rc}): {result.excerpt}"
                store.set_host(rollout_id, run.host, "failed", step="undrain", error=result.output)
                continue
        store.set_host(rollout_id, run.host, "done", step="undrain (rollout abandoned)")
        report.undrained.append(run.host)
    store.set_rollout(rollout_id, "abandoned", "abandoned by a new apply (--abandon)")
    for host, status in sorted(store.drained_hosts().items()):
        why = failed_undrain.get(host) or WHY.get(status, status)
        report.still_drained[host] = (
            f"{why}; the next apply runs it again (drain, deploy, gates, undrain)"
            if host in hosts
            else f"{why}; it is no longer in the inventory: undrain it by hand"
        )
    return report
