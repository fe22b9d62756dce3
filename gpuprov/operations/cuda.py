"""CUDA toolkit operations: which toolkit /usr/local/cuda means."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation

CUDA_LINK = "/usr/local/cuda"


@operation()
def cuda_default(
    target: str,
    current: str | None = None,
    alternative: tuple[str, str] | None = None,
):
    """
    Make /usr/local/cuda lead to `target`, through the `cuda` alternative that NVIDIA's
    packages register (set to manual, so installing a newer toolkit later does not move
    it), or as a plain symlink on hosts without the alternative.

    + target: the toolkit directory, e.g. /usr/local/cuda-12.8
    + current: where /usr/local/cuda leads now (HostStateData.cuda_default)
    + alternative: (mode, target) of the `cuda` alternative, None when not registered

    The choice between the two happens on the host when the command runs: on a fresh host
    the toolkit packages that register the alternative install earlier in the same apply.
    """
    if current == target and (alternative is None or alternative[0] == "manual"):
        host.noop(f"{CUDA_LINK} -> {target} already")
        return
    t, link = shlex.quote(target), shlex.quote(CUDA_LINK)
    tmp = shlex.quote(f"{CUDA_LINK}.gpuprov-new")
    listed = shlex.quote(f"{target} - ")
    # --display and --set exist in Debian's update-alternatives and in RHEL's alternatives
    # (which chkconfig also installs as update-alternatives); --query/--list do not.
    yield (
        "if update-alternatives --display cuda >/dev/null 2>&1; then "
        f"update-alternatives --display cuda | grep -qF {listed} || "
        f"update-alternatives --install {link} cuda {t} 1; "
        f"update-alternatives --set cuda {t}; "
        f"else ln -sfn {t} {tmp} && mv -Tf {tmp} {link}; fi"
    )
