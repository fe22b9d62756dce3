"""The rollout's work on real hosts: one fresh pyinfra State per wave (the runner's `work`).

`gpuprov apply` first runs the deploys as a dry run on every selected host (one State,
`engine.plan.prepare`); `split()` turns that into what the rollout needs: infrastructure
hosts (mirror, controller: applied first, directly, never drained), GPU hosts with
nothing to change (skipped), and GPU hosts to roll out. `WaveWork` then runs each wave:
connect the wave's hosts, prepare, execute, reporting each host's operation as its step.
pyinfra never decides membership: the State holds exactly the wave's hosts
(docs/pyinfra-library.md).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gpuprov.engine.apply import HostResult as ApplyHostResult
from gpuprov.engine.plan import Plan
from gpuprov.inventory.model import Cluster, Host
from gpuprov.rollout.runner import HostResult, Report

if TYPE_CHECKING:
    from gpuprov.engine.connect import SudoPasswords

Deploy = Callable[..., Any]


@dataclass
class Targets:
    infra: list[Host] = field(default_factory=list)  # non-GPU hosts with something to do
    gpu: list[Host] = field(default_factory=list)  # every selected GPU host, for the planner
    converged: list[str] = field(default_factory=list)  # GPU hosts with nothing to change
    # GPU hosts the dry run found not ready, name -> status (refused, unreachable, failed)
    blocked: dict[str, str] = field(default_factory=dict)


def split(hosts: Sequence[Host], plan: Plan, drained: Collection[str] = ()) -> Targets:
    """Sort the selected hosts by what the dry run found. A GPU host that was refused,
    unreachable or whose facts failed in the dry run is in no wave (`blocked`): the
    operator has its reasons now, and in a wave it would only fail and eat `max_fail`.
    An infrastructure host that is not ready stays in `infra`, where it fails and so
    stops the rollout before any GPU host is touched. A GPU host an earlier rollout left
    drained (`drained`) is never converged: only a wave (gates, then undrain) gives it
    back."""
    out = Targets()
    for host in hosts:
        hp = plan.hosts.get(host.name)
        converged = hp is not None and hp.ready and not hp.changes
        converged = converged and not (host.role == "gpu" and host.name in drained)
        if host.role != "gpu":
            if not converged:
                out.infra.append(host)
            continue
        if hp is not None and not hp.ready:
            out.blocked[host.name] = hp.status
            continue
        out.gpu.append(host)
        if converged:
            out.converged.append(host.name)
    return out


class WaveWork:
    """The runner's work callable. Each call (one wave) builds its own State over exactly
    the wave's hosts, connects them, adds the deploys, runs them, and closes the State."""

    def __init__(
        self,
        cluster: Cluster,
        deploys: Sequence[Deploy],
        *,
        password: SudoPasswords | None = None,
        accept_new: bool = False,
    ):
        self.cluster = cluster
        self.deploys = list(deploys)
        self.password = password
        self.accept_new = accept_new
        self.results: dict[str, ApplyHostResult] = {}  # every host this process ran

    def __call__(self, hosts: list[Host], report: Report) -> dict[str, HostResult]:
        from gpuprov.engine.apply import execute
        from gpuprov.engine.connect import Session, build_state, connect_hosts
        from gpuprov.engine.plan import prepare

        for host in hosts:
            report(host.name, "connect")
        state = build_state(self.cluster, hosts, accept_new=self.accept_new, password=self.password)
        session = Session(self.cluster, state, {h.name: h for h in hosts})
        failed_op: dict[str, str] = {}

        def progress(host: str, op: str, outcome: str) -> None:
            if outcome == "failed":
                failed_op.setdefault(host, op)
            report(host, op)

        try:
            connect_hosts(session)
            for name in session.connected:
                report(name, "plan")
            plan = prepare(session, self.deploys)
            result = execute(session, plan, progress)
        finally:
            session.close()
        out: dict[str, HostResult] = {}
        for name, res in result.hosts.items():
            self.results[name] = res
            if res.status == "ok":
                out[name] = HostResult(True, "deploy")
                continue
            step = failed_op.get(name) or {
                "unreachable": "connect",
                "refused": "preflight",
            }.get(res.status, "deploy")
            out[name] = HostResult(
                False, step, res.error or res.status, unreachable=res.status == "unreachable"
            )
        return out

    @property
    def changed(self) -> int:
        return sum(r.changed for r in self.results.values())
