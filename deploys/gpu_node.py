"""A bare host to a verified GPU node, in order. Reads like the runbook it is:

    preflight -> dpkg health -> mirror client -> nouveau -> driver -> (one reboot, if needed)
    -> fabric manager -> CUDA -> containers + CDI -> DCGM

The host's state is read once, by preflight, in one round trip (gpuprov.facts.node_facts:
HostState + DeployExtras + the identity file); every step compares against it and shows
as a no-op when the host is already right, so a second apply changes nothing and costs
one fact round trip per host. Every host gets the same operation sequence (pyinfra
identifies operations by position): steps that do not apply to a host are added as
explicit skips.
"""

from __future__ import annotations

from gpuprov.deploys.container import container
from gpuprov.deploys.context import HOST_DATA_KEY, node_context
from gpuprov.deploys.cuda import cuda
from gpuprov.deploys.dcgm import dcgm
from gpuprov.deploys.dpkg_health import dpkg_health
from gpuprov.deploys.driver import driver, driver_loaded
from gpuprov.deploys.fabricmanager import fabricmanager
from gpuprov.deploys.mirror_client import mirror_client
from gpuprov.deploys.nouveau import nouveau
from pyinfra import host
from pyinfra.api import deploy


@deploy("GPU node")
def gpu_node() -> None:
    from gpuprov.deploys.preflight import preflight

    preflight()  # refuses the host (HostRefused) before any change if it is unfit
    if stack_wanted():
        gpu_stack()


def stack_wanted() -> bool:
    """The GPU stack runs on GPU hosts, except where the inventory asks for preflight only
    (`gpuprov_stack: false`) or the host is a scratch root (`gpuprov_root`, engine tests
    on this machine): packages, modules and reboots cannot be confined to a directory."""
    me = host.data.get(HOST_DATA_KEY)
    if me is None or me.role != "gpu" or me.stack is None:
        return False
    if host.data.get("gpuprov_root"):
        return False
    return host.data.get("gpuprov_stack", True) not in (False, "false", "no", 0)


@deploy("GPU stack")
def gpu_stack() -> None:
    """Everything after preflight (tests and callers that ran preflight already)."""
    ctx = node_context()
    dpkg_health()  # an install an SSH drop cut short is finished before any new one
    mirror_client(ctx=ctx)
    nouveau(ctx=ctx)
    driver(ctx=ctx)
    driver_loaded(ctx=ctx)  # the one controlled reboot, then nvidia-persistenced
    fabricmanager(ctx=ctx)
    cuda(ctx=ctx)
    container(ctx=ctx)
    dcgm(ctx=ctx)
