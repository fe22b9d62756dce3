"""Run deploys with arguments on one inventory host through gpuprov's engine (strict host
keys, plan, then apply), and report what it planned and what changed."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuprov.engine.apply import HostResult, execute
from gpuprov.engine.connect import connect
from gpuprov.engine.plan import HostPlan, prepare
from gpuprov.inventory.loader import load_inventory
from gpuprov.inventory.model import Cluster


@dataclass
class Applied:
    plan: HostPlan
    result: HostResult

    @property
    def planned(self) -> list[str]:
        return [c.name for c in self.plan.changes]

    @property
    def changed(self) -> int:
        return self.result.changed


def cluster_of(inventory: Path) -> Cluster:
    return load_inventory(inventory)


def apply(
    cluster: Cluster, name: str, *deploys: tuple[Callable[..., Any], dict[str, Any]]
) -> Applied:
    """Plan and apply each (deploy or operation, kwargs) on host `name`; raise if it failed."""
    with connect(cluster, [cluster.hosts[name]], require_all=True) as session:
        plan = prepare(session, [functools.partial(fn, **kwargs) for fn, kwargs in deploys])
        result = execute(session, plan)
    host_result = result.hosts[name]
    if host_result.status != "ok":
        raise RuntimeError(f"{name}: {host_result.status}: {host_result.error}")
    return Applied(plan.hosts[name], host_result)
