"""Run a prepared plan: pyinfra's `run_ops` over the hosts that passed preflight, with
per-operation progress events and a per-host summary."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from typing import Any

from gpuprov.engine.connect import Session, quiet_pyinfra
from gpuprov.engine.plan import Plan

# progress(host, operation name, outcome) with outcome "changed" | "ok" | "failed"
Progress = Callable[[str, str, str], None]


@dataclass
class HostResult:
    name: str
    status: str  # ok | failed | refused | unreachable
    changed: int = 0
    ok: int = 0
    failed: int = 0
    error: str | None = None  # a short excerpt: the failed op and the tail of its stderr
    warnings: list[str] = field(default_factory=list)


@dataclass
class ApplyResult:
    hosts: dict[str, HostResult]

    @property
    def failed(self) -> list[HostResult]:
        return [h for h in self.hosts.values() if h.status != "ok"]

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": {
                "hosts": len(self.hosts),
                "failed": len(self.failed),
                "changed": self.changed,
            },
            "hosts": {name: asdict(h) for name, h in self.hosts.items()},
        }


def _op_name(state: Any, op_hash: str) -> str:
    names = state.op_meta[op_hash].names
    return sorted(names)[0] if names else op_hash


def _callbacks(progress: Progress) -> Any:
    from pyinfra.api.state import BaseStateCallback

    class Callbacks(BaseStateCallback):
        @staticmethod
        def operation_host_success(state, host, op_hash, retry_count=0):
            from pyinfra.context import ctx_host

            # Called before pyinfra marks the op complete: use the checked-for change.
            meta = state.ops[host][op_hash].operation_meta
            with ctx_host.use(host):
                changed = meta.will_change
            progress(host.name, _op_name(state, op_hash), "changed" if changed else "ok")

        @staticmethod
        def operation_host_error(state, host, op_hash, retry_count=0, max_retries=0):
            progress(host.name, _op_name(state, op_hash), "failed")

    return Callbacks()


def _excerpt(meta: Any, limit: int = 5) -> str:
    try:
        lines = meta.stderr_lines or meta.stdout_lines
    except Exception:  # not complete / no output captured
        return ""
    return " | ".join(line.strip() for line in lines[-limit:] if line.strip())


def execute(session: Session, plan: Plan, progress: Progress | None = None) -> ApplyResult:
    """Run the operations `plan` added. Hosts that failed to connect or were refused are
    reported as such and never touched."""
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops

    state = session.state
    # A host whose plan changes nothing is not run again: executing would re-read every
    # fact only to yield no commands. This keeps a converged apply at about one round trip.
    idle = {name for name, p in plan.hosts.items() if p.ready and not p.changes}
    for name in idle:
        state.active_hosts.discard(state.inventory.get_host(name))
    if progress is not None:
        state.add_callback_handler(_callbacks(progress))
    # "No hosts remaining!" when every host failed: the per-host results say why.
    with quiet_pyinfra(), suppress(PyinfraError):
        run_ops(state)

    results: dict[str, HostResult] = {}
    for name, host_plan in plan.hosts.items():
        if not host_plan.ready:
            results[name] = HostResult(
                name, host_plan.status, error=host_plan.error, warnings=host_plan.warnings
            )
            continue
        res = HostResult(name, "ok", warnings=host_plan.warnings)
        if name in idle:
            res.ok = host_plan.ops_total
            results[name] = res
            continue
        host = state.inventory.get_host(name)
        for op_hash in state.get_op_order():
            op_data = state.ops[host].get(op_hash)
            if op_data is None:
                continue
            meta = op_data.operation_meta
            if not meta.is_complete():
                continue  # not reached: an earlier op failed on this host
            if meta.did_error():
                res.failed += 1
                if res.error is None:
                    excerpt = _excerpt(meta)
                    res.error = _op_name(state, op_hash) + (f": {excerpt}" if excerpt else "")
            elif meta.did_change():
                res.changed += 1
            else:
                res.ok += 1
        if res.failed or host in state.failed_hosts:
            res.status = "failed"
            res.error = res.error or "failed (connection lost?)"
        results[name] = res
    return ApplyResult(results)
