"""Read one composite fact from every connected host, in parallel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpuprov.engine.connect import Session, quiet_pyinfra


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
