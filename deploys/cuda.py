"""CUDA toolkits: side by side, one default, on PATH with lib64.

Runbook:
1. cuda-toolkit-X-Y for every version in the host's stack (names from the data tables),
   installed side by side under /usr/local/cuda-X.Y and held.
2. /usr/local/cuda -> the default toolkit (the stack's cuda_default, else the newest),
   through the `cuda` alternative the packages register, pinned to manual.
3. /etc/profile.d/cuda.sh: PATH and LD_LIBRARY_PATH to lib64 (DeepOps ships `lib`).
"""

from __future__ import annotations

from gpuprov.deploys.context import NodeContext
from pyinfra.api import deploy

from gpuprov.operations.cuda import cuda_default
from gpuprov.operations.files import managed_file
from gpuprov.operations.system import skipped
from gpuprov.paths import CUDA_PROFILE
from gpuprov.rendering import render
from gpuprov.tables import version_key


def default_cuda(ctx: NodeContext) -> str | None:
    versions = list(ctx.stack.cuda)
    if not versions:
        return None
    return ctx.stack.cuda_default or max(versions, key=version_key)


@deploy("CUDA toolkits")
def cuda(ctx: NodeContext) -> None:
    versions = sorted(ctx.stack.cuda, key=version_key)
    default = default_cuda(ctx)
    if not versions or default is None:
        skipped(name="CUDA toolkits", reason="no CUDA toolkit in this host's stack")
        return
    names = {ctx.pkgs.cuda_toolkit(v): None for v in versions}
    ctx.install(f"CUDA toolkits {', '.join(versions)} side by side, held", names)
    cuda_default(
        name=f"/usr/local/cuda -> CUDA {default}",
        target=f"/usr/local/cuda-{default}",
        current=ctx.state.cuda_default,
        alternative=ctx.state.cuda_alternative,
    )
    managed_file(
        name="CUDA on PATH and LD_LIBRARY_PATH (lib64) for login shells",
        path=CUDA_PROFILE,
        content=render("cuda.sh.j2", default=default, versions=versions),
        digests=ctx.digests,
    )
