"""nvidia-container-toolkit: runtime configuration and CDI specs."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import OperationError

from gpuprov.paths import CDI_SPEC

CONTAINERD_DROPIN = "/etc/containerd/conf.d/99-nvidia.toml"


@operation()
def ctk_runtime_configure(runtime: str, configured: bool, set_as_default: bool = False):
    """
    Register the NVIDIA runtime with docker or containerd through `nvidia-ctk`, which
    merges into the existing configuration (containerd: a drop-in plus an `imports` line;
    docker: `runtimes.nvidia` in daemon.json) instead of replacing the user's file.

    + runtime: "docker" or "containerd"
    + configured: the runtime already knows the nvidia runtime (DeployExtras)
    + set_as_default: make nvidia the default runtime
    """
    if runtime not in ("docker", "containerd"):
        raise OperationError(f"container runtime must be docker or containerd, got {runtime!r}")
    if configured:
        host.noop(f"{runtime} has the nvidia runtime")
        return
    cmd = f"nvidia-ctk runtime configure --runtime={runtime}"
    if runtime == "containerd":
        cmd += f" --drop-in-config={CONTAINERD_DROPIN}"
    if set_as_default:
        cmd += " --set-as-default"
    yield cmd


@operation()
def cdi_generate(
    driver_version: str,
    spec_driver_version: str | None,
    output: str = CDI_SPEC,
):
    """
    (Re)generate the CDI spec when it is missing or names another driver version (a
    spec left from before a driver change points containers at libraries that are gone).

    + driver_version: the driver that is (or will be, after this apply) installed
    + spec_driver_version: the version the current spec names, None when there is none
    + output: where the spec goes
    """
    if spec_driver_version == driver_version:
        host.noop(f"CDI spec {output} is for driver {driver_version}")
        return
    yield f"nvidia-ctk cdi generate --output={shlex.quote(output)}"
