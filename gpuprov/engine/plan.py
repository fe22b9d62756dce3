"""Dry run: add the deploys' operations for every connected host and read `will_change`.

Nothing runs on the hosts except the facts the operations read. Each host's deploys
are added on its own greenlet, so the facts of all hosts are read in parallel (pyinfra's
context is greenlet-local and, in library mode, an op's identity is its position in
the host's own sequence; docs/pyinfra-library.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gpuprov.engine import timings
from gpuprov.engine.connect import Session, quiet_pyinfra
from gpuprov.engine.gather import prefetch_node_facts
from gpuprov.engine.refusal import HostRefused, Refusal, warnings_for

Deploy = Callable[..., Any]


@dataclass
class OpChange:
    name: str  # "Preflight | Record the host's identity in /etc/gpuprov/host.json"
    description: str  # "files.template dest=/etc/gpuprov/host.json"


@dataclass
class HostPlan:
    name: str
    status: str = "ok"  # ok | refused | unreachable | failed
    changes: list[OpChange] = field(default_factory=list)
    ops_total: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # one line: refusal reason(s) + fix, or connection error
    refusals: list[Refusal] = field(default_factory=list)  # every one, most fundamental first

    @property
    def ready(self) -> bool:
        return self.status == "ok"


@dataclass
class Plan:
    hosts: dict[str, HostPlan]

    @property
    def changes(self) -> int:
        return sum(len(h.changes) for h in self.hosts.values())

    @property
    def blocked(self) -> list[HostPlan]:
        return [h for h in self.hosts.values() if not h.ready]

    def blocked_counts(self) -> dict[str, int]:
        """Hosts that are not ready, by status ("refused", "unreachable", "failed")."""
        counts: dict[str, int] = {}
        for h in self.blocked:
            counts[h.status] = counts.get(h.status, 0) + 1
        return counts

    def refusals(self) -> dict[str, list[dict[str, Any]]]:
        """Every refused host's refusals ({reason, fix, code}), for JSON documents."""
        return {n: [asdict(r) for r in h.refusals] for n, h in self.hosts.items() if h.refusals}

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": {
                "hosts": len(self.hosts),
                "ready": len(self.hosts) - len(self.blocked),
                "blocked": len(self.blocked),
                "changes": self.changes,
            },
            "hosts": {name: asdict(h) for name, h in self.hosts.items()},
        }


def _describe(session: Session, op_hash: str) -> OpChange:
    meta = session.state.op_meta[op_hash]
    name = sorted(meta.names)[0] if meta.names else op_hash
    args = ", ".join(str(a) for a in meta.args)
    return OpChange(name=name, description=args)


def _add_for_host(session: Session, name: str, deploys: Sequence[Deploy]) -> HostPlan:
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.exceptions import PyinfraError

    state = session.state
    host = state.inventory.get_host(name)
    plan = HostPlan(name)
    try:
        for deploy in deploys:
            add_deploy(state, deploy, host=host)
    except HostRefused as exc:
        plan.status, plan.error, plan.refusals = "refused", str(exc), list(exc.refusals)
    except PyinfraError as exc:  # e.g. a fact's command failed on this host
        plan.status, plan.error = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
    return plan


def prepare(session: Session, deploys: Sequence[Deploy]) -> Plan:
    """Add `deploys` for every connected host and say what would change. Refused hosts
    are taken out of the State so a later `run_ops` skips them."""
    import gevent
    from pyinfra.context import ctx_host, ctx_state

    state = session.state
    hosts: dict[str, HostPlan] = {}
    # Every host's one fact round trip first, all in parallel (the "facts" phase).
    timings.current().facts.update(prefetch_node_facts(session))
    timings.mark("facts")
    # pyinfra's state context is process-global (only the host context is per greenlet):
    # hold it for the whole parallel section, or one host's `use(state)` ending would
    # clear it under the others.
    with quiet_pyinfra(), ctx_state.use(state):
        greenlets = {
            name: state.pool.spawn(_add_for_host, session, name, deploys)
            for name in session.connected
        }
        gevent.joinall(list(greenlets.values()))
    for name in session.hosts:
        result = session.results.get(name)
        if result is None or not result.ok:
            hosts[name] = HostPlan(
                name, status="unreachable", error=result.message if result else None
            )
            continue
        plan = greenlets[name].get()
        host = state.inventory.get_host(name)
        plan.warnings = warnings_for(state, name)
        if not plan.ready:
            state.active_hosts.discard(host)
            state.failed_hosts.add(host)
            state.ops[host].clear()
        else:
            with ctx_state.use(state), ctx_host.use(host):
                for op_hash in state.get_op_order():
                    op_data = state.ops[host].get(op_hash)
                    if op_data is None:
                        continue
                    plan.ops_total += 1
                    if op_data.operation_meta.will_change:
                        plan.changes.append(_describe(session, op_hash))
        hosts[name] = plan
    timings.mark("evaluate")
    return Plan(hosts)
