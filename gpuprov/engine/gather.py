"""Read one composite fact from every connected host, in parallel."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gpuprov.engine.connect import Session, quiet_pyinfra
from gpuprov.engine.timings import FactTiming


@dataclass
class FactResult:
    host: str
    ok: bool
    data: Any = None  # the fact's processed value
    error: str | None = None  # one line


def gather(session: Session, fact_cls: type) -> dict[str, FactResult]:
    """`fact_cls` (a pyinfra FactBase) for every host of the session, inventory order;
    hosts that did not connect carry their connection error."""
    import gevent
    from pyinfra.context import ctx_state

    state = session.state

    def one(name: str) -> FactResult:
        host = state.inventory.get_host(name)
        try:
            data: Any = host.get_fact(fact_cls)
        except Exception as exc:  # a failed fact command is this host's problem only
            text = str(exc).strip().splitlines()
            return FactResult(name, False, error=text[0] if text else type(exc).__name__)
        if data is None:
            # pyinfra answers None when the fact command itself failed; with sudo that is
            # usually the password (each host's comes from its own sudo_password_env).
            why = "the fact command failed"
            if host.data.get("_sudo"):
                why += " under sudo (wrong sudo password, or sudo refused this user?)"
            return FactResult(name, False, error=why)
        return FactResult(name, True, data)

    # pyinfra's state context is process-global: hold it across the parallel section.
    with quiet_pyinfra(), ctx_state.use(state):
        greenlets = {name: state.pool.spawn(one, name) for name in session.connected}
        gevent.joinall(list(greenlets.values()))
    results: dict[str, FactResult] = {}
    for name in session.hosts:
        if name in greenlets:
            results[name] = greenlets[name].get()
        else:
            conn = session.results.get(name)
            results[name] = FactResult(name, False, error=conn.message if conn else None)
    return results


def prefetch_node_facts(session: Session) -> dict[str, FactTiming]:
    """Read every connected host's NodeFacts in parallel, into the cache the deploys read
    (`read_node_facts`), before any deploy runs: the one round trip per host is then its
    own phase (`--timings`), and evaluating the operations waits on no host. A host whose
    fact fails is left to its deploys, which fail it with the usual message."""
    import gevent
    from pyinfra.context import ctx_host, ctx_state

    from gpuprov.facts.node_facts import read_node_facts

    state = session.state

    def one(name: str) -> FactTiming | None:
        host = state.inventory.get_host(name)
        start = time.perf_counter()
        try:
            with ctx_host.use(host):
                data = read_node_facts()
        except Exception:  # noqa: BLE001 - reported when the deploys read it again
            return None
        return FactTiming(time.perf_counter() - start, data.script_seconds)

    with quiet_pyinfra(), ctx_state.use(state):
        greenlets = {name: state.pool.spawn(one, name) for name in session.connected}
        gevent.joinall(list(greenlets.values()))
    return {name: t for name, g in greenlets.items() if (t := g.get()) is not None}
