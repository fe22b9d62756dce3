"""Containers with GPUs: runtime, NVIDIA container toolkit, CDI.

Runbook:
1. The inventory's runtime (docker or containerd; `none` skips 1, 3 and 4), from the
   site mirror. An installed alternative (docker-ce, containerd.io) is kept.
2. nvidia-container-toolkit, held.
3. `nvidia-ctk runtime configure`: containerd through a drop-in plus an `imports` line,
   docker by merging `runtimes.nvidia` into daemon.json; the user's other settings stay.
   Then the runtime is restarted once.
4. The CDI spec /etc/cdi/nvidia.yaml, regenerated whenever it names another driver version
   than the pinned one (a stale spec after a driver change breaks every GPU container).
   This runs after the controlled reboot, when the new module is loaded.
"""

from __future__ import annotations

from gpuprov.deploys.context import NodeContext
from pyinfra.api import deploy

from gpuprov import tables
from gpuprov.operations.nvidia import CDI_SPEC, cdi_generate, ctk_runtime_configure
from gpuprov.operations.service import service_running
from gpuprov.operations.system import skipped


@deploy("Container runtime and CDI")
def container(ctx: NodeContext) -> None:
    runtime = ctx.stack.container_runtime
    if runtime == "none":
        skipped(name="Container runtime", reason="container_runtime: none")
    else:
        names = tables.runtime_packages(ctx.os_key, runtime)
        present = any(n in ctx.installed for n in names)
        ctx.install(f"Container runtime: {runtime}", {} if present else {names[0]: None}, False)
    ctx.install("NVIDIA container toolkit, held", {ctx.pkgs.container_toolkit: None})
    if runtime == "none":
        skipped(name="nvidia runtime", reason="container_runtime: none")
        skipped(name="Restart the runtime", reason="container_runtime: none")
    else:
        configured = bool(ctx.extras.get(f"{runtime}_nvidia"))
        ctk_runtime_configure(
            name=f"Register the nvidia runtime with {runtime} (merged, not overwritten)",
            runtime=runtime,
            configured=configured,
        )
        svc = ctx.service(runtime)
        service_running(
            name=f"{runtime} running with the nvidia runtime",
            unit=runtime,
            restart=not configured or ctx.runtime_restart,
            active_now=svc.active,
            enabled_now=svc.enabled,
        )
    cdi_generate(
        name=f"CDI spec for driver {ctx.stack.driver.version}",
        driver_version=ctx.stack.driver.version,
        spec_driver_version=ctx.extras.get("cdi_driver"),
        output=CDI_SPEC,
    )
