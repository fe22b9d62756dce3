"""Run deploys on one test host through pyinfra as a library, the way the engine does
(strict host keys against the lab's known_hosts, the lab key, no agent), and report which
operations changed. Used until `gpuprov.engine` is on main; then the tests should go
through it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host, ctx_state


@dataclass
class Applied:
    changed: list[str] = field(default_factory=list)  # names of ops that ran commands
    ok: list[str] = field(default_factory=list)  # names of ops that changed nothing
    output: dict[str, list[str]] = field(default_factory=dict)


def ssh_data(address: str, key: str, known_hosts: str, port: int = 22) -> dict[str, Any]:
    return {
        "ssh_hostname": address,
        "ssh_port": port,
        "ssh_user": "root",
        "ssh_key": key,
        "ssh_known_hosts_file": known_hosts,
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
        "ssh_connect_retries": 0,
    }


def apply(
    name: str, data: dict[str, Any], *deploys: tuple[Callable[..., Any], dict[str, Any]]
) -> Applied:
    """Add each (deploy, kwargs) for host `name`, run them, return what changed."""
    inventory = Inventory(([(name, data)], {}))
    state = State(inventory, Config(CONNECT_TIMEOUT=30))
    try:
        connect_all(state)
        host = inventory.get_host(name)
        if state.failed_hosts:
            raise RuntimeError(f"could not connect to {name}")
        for fn, kwargs in deploys:
            add_deploy(state, fn, **kwargs)
        with contextlib.suppress(PyinfraError):  # "No hosts remaining": the failed op says why
            run_ops(state)
        result = Applied()
        with ctx_state.use(state), ctx_host.use(host):
            for op_hash in state.get_op_order():
                meta = state.get_op_data_for_host(host, op_hash).operation_meta
                op_name = ", ".join(sorted(state.get_op_meta(op_hash).names))
                if not meta.is_complete():
                    continue  # after a failure
                if not meta.did_succeed():
                    raise RuntimeError(
                        f"{name}: {op_name} failed:\n" + "\n".join(meta.stderr_lines[-20:])
                    )
                result.output[op_name] = meta.stdout_lines
                (result.changed if meta.did_change() else result.ok).append(op_name)
        if state.failed_hosts:
            raise RuntimeError(f"{name} failed")
        return result
    finally:
        disconnect_all(state)
