"""Fabric manager (NVSwitch systems only): exactly the driver's version, running.

Runbook:
1. The package was installed and held with the driver, at the same version, in the same
   transaction (deploys/driver.py); here we check that is what the host will have, because
   a mismatch makes the service refuse to start and CUDA fail with error 802 while
   everything else reports ready.
2. The service is enabled and running, restarted when its package changed. This runs after
   the controlled reboot, when the loaded module matches.
On hosts without NVSwitches the step shows as skipped (same op sequence on every host).
"""

from __future__ import annotations

from gpuprov.deploys.context import NodeContext
from pyinfra.api import deploy

from gpuprov.operations.service import service_running
from gpuprov.operations.system import skipped

UNIT = "nvidia-fabricmanager"


def version_problem(ctx: NodeContext) -> str | None:
    """The fabric manager version the host has now vs the driver's, when they differ."""
    have = ctx.installed.get(ctx.pkgs.fabricmanager)
    driver = ctx.installed.get(ctx.pkgs.driver)
    if have and driver and have.split("-")[0] != driver.split("-")[0]:
        return f"fabric manager {have} does not match driver {driver}"
    return None


@deploy("Fabric manager")
def fabricmanager(ctx: NodeContext) -> None:
    if not ctx.nvswitch:
        skipped(name="Fabric manager", reason="no NVSwitch in this system: not needed")
        return
    svc = ctx.service(UNIT)
    service_running(
        name=f"{UNIT} {ctx.pkgs.fabricmanager_version} enabled and running",
        unit=UNIT,
        # A version mismatch found now is repaired by the driver transaction; restart so
        # the running daemon is the new one.
        restart=ctx.fabricmanager_changing or version_problem(ctx) is not None,
        active_now=svc.active,
        enabled_now=svc.enabled,
    )
