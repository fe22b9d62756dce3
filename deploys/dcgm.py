"""DCGM 4 for the host's CUDA major, never a downgrade.

Runbook:
1. datacenter-gpu-manager-4-cuda<major> (major of the default CUDA toolkit, else what
   the driver branch runs: 13 from R580, 12 before). Never the old `datacenter-gpu-manager`
   name: that is DCGM 3, and installing it over DCGM 4 downgrades silently (DeepOps #1394).
2. A newer DCGM on the host than the one asked for (a later major, or a newer version
   than `gpuprov_dcgm_version`) is left alone: the plan shows the step skipped and a warning.
3. nvidia-dcgm (the host engine) enabled and running.
"""

from __future__ import annotations

from gpuprov.deploys.context import NodeContext, warn
from gpuprov.deploys.cuda import stack_default_cuda
from pyinfra.api import deploy

from gpuprov.inventory.model import Stack
from gpuprov.operations.debversion import compare
from gpuprov.operations.service import service_running
from gpuprov.operations.system import skipped

UNIT = "nvidia-dcgm"
DCGM4_CORE = "datacenter-gpu-manager-4-core"


def cuda_major(ctx: NodeContext) -> str:
    return stack_cuda_major(ctx.stack)


def stack_cuda_major(stack: Stack) -> str:
    """The CUDA major DCGM is chosen for: the default toolkit's, else the driver's."""
    default = stack_default_cuda(stack)
    if default:
        return default.split(".")[0]
    return "13" if int(stack.driver.branch) >= 580 else "12"


def _major(version: str) -> int:
    upstream = version.split(":", 1)[-1]
    return int(upstream.split(".")[0]) if upstream.split(".")[0].isdigit() else 0


def conflict(ctx: NodeContext, package: str, pinned: str | None) -> str | None:
    """Why installing `package` (at `pinned`) would downgrade the host's DCGM, if it would."""
    for name, version in sorted(ctx.installed.items()):
        if not name.startswith("datacenter-gpu-manager"):
            continue
        if _major(version) > 4:
            return f"{name} {version} (DCGM {_major(version)}) is newer than DCGM 4"
        if pinned and name in (package, DCGM4_CORE) and compare(version, pinned) > 0:
            return f"{name} {version} is newer than the pinned {pinned}"
    return None


@deploy("DCGM")
def dcgm(ctx: NodeContext) -> None:
    if not ctx.stack.dcgm:
        skipped(name="DCGM", reason="dcgm: false in this host's stack")
        skipped(name="nvidia-dcgm service", reason="dcgm: false in this host's stack")
        return
    package = ctx.pkgs.dcgm(cuda_major(ctx))
    pinned = ctx.var("gpuprov_dcgm_version")
    problem = conflict(ctx, package, pinned)
    if problem:
        warn(f"DCGM not changed: {problem} (never downgraded)")
        skipped(name=f"DCGM {package}", reason=f"skipped, never downgraded: {problem}")
    else:
        # A CUDA major change swaps the DCGM 4 variant: the held old one goes in the same
        # transaction (the variants conflict; held, apt would refuse).
        others = sorted(
            n
            for n in ctx.installed
            if n.startswith("datacenter-gpu-manager-4-cuda") and n != package
        )
        ctx.install(f"DCGM 4: {package}, held", {package: pinned}, remove=others)
    svc = ctx.service(UNIT)
    service_running(
        name="nvidia-dcgm host engine enabled and running",
        unit=UNIT,
        restart=ctx.driver_changing and not ctx.reboot_reasons and svc.active == "active",
        active_now=svc.active,
        enabled_now=svc.enabled,
    )
