"""A bare host to a verified GPU node, in order. Reads like the runbook it is:

    preflight -> dpkg health -> mirror client -> nouveau -> driver -> (one reboot, if needed)
    -> fabric manager -> CUDA -> containers + CDI -> DCGM

`plan`/`apply --only/--skip` run a subset (deploys/steps.py): preflight always, the
others as selected, each left-out step as one explicit skip. A step whose dependency the
run leaves out is refused where that dependency is not already met (`unmet`).

The host's state is read once, by preflight, in one round trip (gpuprov.facts.node_facts:
HostState + DeployExtras + the identity file); every step compares against it and shows
as a no-op when the host is already right, so a second apply changes nothing and costs
one fact round trip per host. Every host gets the same operation sequence (pyinfra
identifies operations by position): steps that do not apply to a host are added as
explicit skips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuprov.deploys.container import container
from gpuprov.deploys.context import HOST_DATA_KEY, NodeContext, node_context
from gpuprov.deploys.cuda import cuda
from gpuprov.deploys.dcgm import dcgm
from gpuprov.deploys.dpkg_health import dpkg_health
from gpuprov.deploys.driver import driver, driver_loaded
from gpuprov.deploys.fabricmanager import fabricmanager
from gpuprov.deploys.mirror_client import mirror_client
from gpuprov.deploys.nouveau import nouveau
from gpuprov.deploys.steps import ALL, StepSelection
from pyinfra import host
from pyinfra.api import deploy

from gpuprov.facts.scratch_root import is_scratch_root
from gpuprov.operations.system import skipped

if TYPE_CHECKING:
    from gpuprov.engine.refusal import HostRefused


@deploy("GPU node")
def gpu_node(steps: StepSelection = ALL) -> None:
    from gpuprov.deploys.preflight import preflight

    preflight()  # refuses the host (HostRefused) before any change if it is unfit
    if stack_wanted():
        gpu_stack(steps=steps)


def stack_wanted() -> bool:
    """The GPU stack runs on GPU hosts, except where the inventory asks for preflight only
    (`gpuprov_stack: false`) or the host is a scratch root (`gpuprov_root`, engine tests
    on this machine): packages, modules and reboots cannot be confined to a directory."""
    me = host.data.get(HOST_DATA_KEY)
    if me is None or me.role != "gpu" or me.stack is None:
        return False
    if is_scratch_root(host):
        return False
    return host.data.get("gpuprov_stack", True) not in (False, "false", "no", 0)


@deploy("GPU stack")
def gpu_stack(steps: StepSelection = ALL) -> None:
    """Everything after preflight (tests and callers that ran preflight already)."""
    ctx = node_context()
    # Always, whatever the steps: any later apt transaction fails on an interrupted dpkg.
    dpkg_health()  # an install an SSH drop cut short is finished before any new one
    if not steps.everything:
        refusal = unmet(ctx, steps)
        if refusal is not None:
            raise refusal
    runbook = (
        ("mirror-client", mirror_client),
        ("nouveau", nouveau),
        ("driver", driver),
        # the one controlled reboot, then nvidia-persistenced; nouveau's blacklist needs it too
        ("driver", driver_loaded),
        ("fabricmanager", fabricmanager),
        ("cuda", cuda),
        ("container", container),
        ("dcgm", dcgm),
    )
    for step, run in runbook:
        if steps.runs(step) or (run is driver_loaded and steps.runs("nouveau")):
            run(ctx=ctx)
        else:
            skipped(name=f"{step} (not selected)", reason=steps.skip_reason(step))


def installed_driver(ctx: NodeContext) -> str | None:
    """The upstream version of the driver installed now ("580.95.05"), if any."""
    have = ctx.installed.get(ctx.pkgs.kernel_module) or ctx.installed.get(ctx.pkgs.driver)
    return have.split("-")[0] if have else None


def unmet(ctx: NodeContext, steps: StepSelection) -> HostRefused | None:
    """Why this host cannot run the selected steps without one the run leaves out."""
    from gpuprov.deploys.fabricmanager import version_problem

    from gpuprov import tables
    from gpuprov.engine.refusal import HostRefused

    if steps.runs("driver"):
        return None
    want = ctx.stack.driver.version
    have = installed_driver(ctx)
    if steps.runs("fabricmanager") and ctx.nvswitch:
        if ctx.installed.get(ctx.pkgs.driver) != ctx.pkgs.driver_version:
            return HostRefused(
                f"{steps.flag}: fabric manager must run at the driver's exact version, and this "
                f"host has driver {have or 'none'} where the inventory pins {want} (fabric "
                "manager is installed with the driver, in one transaction)",
                "add the driver step (--only driver,fabricmanager)",
            )
        problem = version_problem(ctx)
        if problem:
            return HostRefused(
                f"{steps.flag}: {problem}", "add the driver step (--only driver,fabricmanager)"
            )
    if steps.runs("cuda") and ctx.stack.cuda:
        if have is None:
            return HostRefused(
                f"{steps.flag}: no NVIDIA driver installed for CUDA {', '.join(ctx.stack.cuda)}",
                "add the driver step",
            )
        for version in ctx.stack.cuda:
            compat = tables.cuda_compat_branch(version)
            branch = int(have.split(".")[0])
            if not tables.driver_supports_cuda(have, version) and (
                compat is None or branch < compat
            ):
                return HostRefused(
                    f"{steps.flag}: CUDA {version} needs driver "
                    f"{tables.cuda_min_driver(version)} or newer; this host has {have}",
                    "add the driver step, or roll out the driver first",
                )
    return None
