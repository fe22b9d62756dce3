"""`gpuprov rollout plan INVENTORY`: show the canary and waves a rollout would use."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click
from gpuprov.cli._options import INVENTORY, OUTPUT
from gpuprov.cli.app import App

if TYPE_CHECKING:
    from gpuprov.rollout.planner import RolloutPlan


@click.command()
@INVENTORY
@OUTPUT
@click.pass_obj
def plan(app: App, inventory: Path, output: str) -> None:
    """Show the waves (canary first) for the GPU hosts of INVENTORY.

    Nothing connects to a host: the plan depends only on the inventory, and is the same
    on every run (hosts are ordered by a hash seeded with the cluster name).
    """
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.rollout.planner import plan_rollout

    cluster = load_inventory(inventory)
    policy = cluster.rollout
    result = plan_rollout(cluster.gpu_hosts(), policy, seed=cluster.name)
    if output == "json":
        data = result.to_dict()
        data["cluster"] = cluster.name
        data["failure_domain"] = policy.failure_domain
        data["max_per_domain"] = policy.max_per_domain
        app.json(data)
        return
    show_waves(app, result, policy, title=f"rollout plan for {cluster.name}")


def show_waves(app: App, result, policy, title: str) -> None:
    """The waves as a table (members and their failure domains) and a one-line summary."""
    from gpuprov.rollout.planner import domain_of

    hosts = result.host_objects

    def spread(names: tuple[str, ...]) -> str:
        counts = Counter(domain_of(hosts[n], policy.failure_domain).split(":", 1)[1] for n in names)
        return ", ".join(f"{d}×{c}" if c > 1 else d for d, c in sorted(counts.items()))

    rows = [(w.name, len(w.hosts), ", ".join(w.hosts), spread(w.hosts)) for w in result.waves]
    app.table(["wave", "hosts", "members", policy.failure_domain], rows, title=title)
    limit = (
        f", at most {policy.max_per_domain} per {policy.failure_domain}"
        if policy.max_per_domain
        else ""
    )
    skipped = f"; {len(result.skipped)} already converged (skipped)" if result.skipped else ""
    app.info(
        f"{len(result.host_names)} hosts in {len(result.waves)} waves{limit}; "
        f"max_fail {policy.max_fail} per wave{skipped}{excluded_text(result)}"
    )


def excluded_text(rplan: RolloutPlan) -> str:
    """The hosts the dry run left out of the waves, for a summary line: "; not in any
    wave: 2 refused, 1 unreachable" (empty when every host was ready)."""
    counts = rplan.excluded_counts()
    if not counts:
        return ""
    return "; not in any wave: " + ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items())
    )
