"""Containers with GPUs: runtime, NVIDIA container toolkit, CDI.

Runbook:
1. The inventory's runtime (docker, podman or containerd; `none` skips 1, 3 and 4), from
   the site mirror. An installed alternative (docker-ce, containerd.io) is kept.
2. nvidia-container-toolkit, held.
3. docker: `features: {cdi: true}` merged into daemon.json (docker 25-27 inject CDI
   devices only with it; the user's settings and the mirror client's stay). Then
   `nvidia-ctk runtime configure`: containerd through a drop-in plus an `imports` line,
   docker by merging `runtimes.nvidia` into daemon.json. Then the runtime is restarted
   once. podman reads CDI specs itself and has no daemon: nothing to configure.
4. The CDI spec /etc/cdi/nvidia.yaml, regenerated whenever it names another driver version
   than the pinned one (a stale spec after a driver change breaks every GPU container).
   This runs after the controlled reboot, when the new module is loaded.
"""

from __future__ import annotations

from gpuprov.deploys.context import NodeContext
from pyinfra.api import deploy

from gpuprov import tables
from gpuprov.operations.docker import DaemonJsonError, docker_daemon_lists, merge_daemon_json
from gpuprov.operations.nvidia import CDI_SPEC, cdi_generate, ctk_runtime_configure
from gpuprov.operations.service import service_running
from gpuprov.operations.system import skipped

DOCKER_CDI: dict[str, dict[str, object]] = {"features": {"cdi": True}}


@deploy("Container runtime and CDI")
def container(ctx: NodeContext) -> None:
    runtime = ctx.stack.container_runtime
    installing = False  # the runtime's package is installed by this apply
    if runtime == "none":
        skipped(name="Container runtime", reason="container_runtime: none")
    else:
        names = tables.runtime_packages(ctx.os_key, runtime)
        present = any(n in ctx.installed for n in names)
        wanted = {} if present else {names[0]: None}
        for extra in tables.runtime_extra_packages(ctx.os_key, runtime):
            if extra not in ctx.installed:
                wanted[extra] = None
        ctx.install(f"Container runtime: {runtime}", wanted, False)
        # Debian's postinst starts a freshly installed daemon before its settings below
        # exist: it must be restarted, not "started" (a no-op on a running unit).
        installing = names[0] in wanted
    ctx.install("NVIDIA container toolkit, held", {ctx.pkgs.container_toolkit: None})
    if runtime == "docker":
        _docker_cdi_feature(ctx)
    if runtime in ("none", "podman"):
        why = "container_runtime: none" if runtime == "none" else "podman reads CDI specs itself"
        skipped(name="nvidia runtime", reason=why)
        skipped(name="Restart the runtime", reason=why if runtime == "none" else "no daemon")
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
            active_now="active" if installing else svc.active,
            enabled_now=svc.enabled,
        )
    cdi_generate(
        name=f"CDI spec for driver {ctx.stack.driver.version}",
        driver_version=ctx.stack.driver.version,
        spec_driver_version=ctx.extras.get("cdi_driver"),
        output=CDI_SPEC,
    )


def _docker_cdi_feature(ctx: NodeContext) -> None:
    try:
        merged = merge_daemon_json(ctx.docker_daemon, {}, DOCKER_CDI)
    except DaemonJsonError as exc:
        from gpuprov.engine.refusal import HostRefused

        raise HostRefused(str(exc), "fix the file on the host (docker cannot start)") from None
    docker_daemon_lists(
        name="docker: inject GPUs through CDI (features.cdi)",
        lists={},
        objects=DOCKER_CDI,
        current=ctx.docker_daemon,
    )
    if merged is not None:
        ctx.docker_daemon = merged
        ctx.runtime_restart = True
