"""Plan the GPU stack for one host whose facts are given (pyinfra's @fake connector
answers the HostState and DeployExtras commands), without running anything."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from gpuprov.deploys.context import HOST_DATA_KEY
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_host, ctx_state

from gpuprov.inventory.model import DriverPin, Host, SSHSettings, Stack


@dataclass
class PlannedOp:
    name: str
    commands: list[str]
    noop: str | None


def gpu_host(
    profile: str = "hgx-h100-8",
    version: str = "580.95.05",
    modules: str = "auto",
    cuda: tuple[str, ...] = ("12.8", "13.0"),
    runtime: str = "containerd",
    dcgm: bool = True,
    **vars: object,
) -> Host:
    stack = Stack(
        driver=DriverPin(version.split(".")[0], version, modules),  # type: ignore[arg-type]
        cuda=cuda,
        container_runtime=runtime,  # type: ignore[arg-type]
        dcgm=dcgm,
    )
    return Host("gpu001", "10.0.1.1", "gpu", "hgx", SSHSettings(), stack, profile, vars=dict(vars))


def mirror_host() -> Host:
    """The site's mirror host (role `mirror`: no GPU stack)."""
    return Host("mirror01", "10.0.0.5", "mirror", "mirror", SSHSettings(), None, None)


def extras_output(
    digests: dict[str, str] | None = None,
    cdi_driver: str | None = None,
    docker: bool = False,
    containerd: bool = False,
    docker_daemon: str | None = None,
    environment: str | None = None,
    docker_mirror: str | None = None,
) -> str:
    lines = [f"file {d} {p}" for p, d in (digests or {}).items()]
    if cdi_driver:
        lines.append(f"cdi {cdi_driver}")
    if docker:
        lines.append("docker-nvidia yes")
    if containerd:
        lines.append("containerd-nvidia yes")
    if docker_daemon is not None:
        lines.append("docker-daemon " + base64.b64encode(docker_daemon.encode()).decode())
    if environment is not None:
        lines.append("environment " + base64.b64encode(environment.encode()).decode())
    if docker_mirror is not None:
        lines.append("docker-mirror " + base64.b64encode(docker_mirror.encode()).decode())
    return "\n".join(lines)


def node_facts_output(host_state: str, extras: str = "", identity: str = "absent") -> str:
    """What the NodeFacts command prints: HostState's sections, then extras, identity."""
    return (
        host_state
        + f"@@gpuprov:begin extras\n{extras}\n@@gpuprov:end extras 0\n"
        + f"@@gpuprov:begin identity\n{identity}\n@@gpuprov:end identity 0\n"
    )


def plan(
    me: Host,
    host_state: str,
    extras: str = "",
    deploy: object = None,
    identity: str = "absent",
    **data: object,
) -> list[PlannedOp]:
    """The ops `deploy` (default: the GPU stack after preflight) plans for `me` against
    the given fact output."""
    from gpuprov.deploys.gpu_node import gpu_stack

    host_data = {
        HOST_DATA_KEY: me,
        "fake_delay": 0,
        "fake_delay_jitter": 0,
        # Matched as substrings of the fact commands, in this order: the one NodeFacts
        # command is HostState's script with the extras and identity sections after it.
        "fake_responses": {
            "gpuprov HostState": node_facts_output(host_state, extras, identity).splitlines(),
        },
        **data,
    }
    inventory = Inventory(([("@fake/gpu001", host_data)], {}))
    state = State(inventory, Config(), check_for_changes=True)
    connect_all(state)
    host = inventory.get_host("@fake/gpu001")
    add_deploy(state, deploy or gpu_stack)
    if state.failed_hosts:
        raise PyinfraError(f"planning failed for {host.name}")
    ops = []
    for op_hash in state.get_op_order():
        data_for_host = state.get_op_data_for_host(host, op_hash)
        names = state.get_op_meta(op_hash).names
        noted: list[str] = []
        host.noop = noted.append  # type: ignore[method-assign]  # record, don't print
        with ctx_state.use(state), ctx_host.use(host):
            commands = [_text(c) for c in data_for_host.command_generator()]
        ops.append(PlannedOp(", ".join(sorted(names)), commands, noted[-1] if noted else None))
    return ops


def _text(command: object) -> str:
    fn = getattr(command, "function", None)
    if fn is not None:
        return f"<{fn.__name__}>"
    return str(command)


def changes(ops: list[PlannedOp]) -> list[PlannedOp]:
    return [op for op in ops if op.commands]
