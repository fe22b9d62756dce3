"""dnf (RHEL/Rocky 9): NVIDIA's driver module streams, exact installs, versionlock."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import OperationError

from gpuprov.operations.debversion import compare

DNF = "dnf -y -q"


@operation()
def dnf_module_install(
    stream: str,
    profile: str | None = None,
    current_stream: str | None = None,
    installed: bool = False,
):
    """
    Install a dnf module stream ("nvidia-driver:580-open"), switching from another
    stream of the same module when one is enabled.

    + stream: "module:stream"
    + profile: module profile ("fm" adds fabric manager on NVSwitch systems)
    + current_stream: the enabled stream now ("570-open"), None when none is
    + installed: whether the module's packages are installed now

    **Example:**

    .. code:: python

        dnf_module_install(stream="nvidia-driver:580-open", profile="fm")
    """
    module, _, wanted = stream.partition(":")
    if not module or not wanted:
        raise OperationError(f"module stream must be 'module:stream', got {stream!r}")
    spec = f"{stream}/{profile}" if profile else stream
    if current_stream == wanted and installed:
        host.noop(f"module {spec} is installed")
        return
    if current_stream and current_stream != wanted:
        # switch-to moves the installed packages to the new stream in one transaction.
        yield f"{DNF} module switch-to {shlex.quote(spec)}"
        return
    yield f"{DNF} module reset {shlex.quote(module)}"
    yield f"{DNF} module install {shlex.quote(spec)}"


@operation()
def dnf_pinned_install(
    packages: Mapping[str, str | None],
    allow_downgrade: bool = False,
    installed: dict[str, str] | None = None,
):
    """
    Install packages at exact versions ("name-version").

    + packages: name -> version-release ("580.95.05-1"), or None for any version
    + allow_downgrade: otherwise a newer installed version is an error
    + installed: name -> installed version-release (HostState)
    """
    installed = installed or {}
    changes = {
        n: v
        for n, v in packages.items()
        if n not in installed or (v is not None and installed[n] != v)
    }
    downgrades = [
        f"{n} {installed[n]} -> {v}"
        for n, v in changes.items()
        if v is not None and n in installed and compare(installed[n], v) > 0
    ]
    if downgrades and not allow_downgrade:
        raise OperationError(
            "refusing to downgrade " + ", ".join(sorted(downgrades)) + " (allow_downgrade=True)"
        )
    if not changes:
        host.noop("installed: " + ", ".join(f"{n}-{installed[n]}" for n in sorted(packages)))
        return
    specs = " ".join(shlex.quote(f"{n}-{v}" if v else n) for n, v in sorted(changes.items()))
    verb = "install --allowerasing" if not downgrades else "downgrade"
    yield f"{DNF} {verb} {specs}"


@operation()
def dnf_versionlock(packages: dict[str, str], locked: dict[str, str] | None = None):
    """
    Lock packages at their versions (`dnf versionlock`), replacing older locks.

    + packages: name -> version-release to lock
    + locked: name -> locked version-release now
    """
    locked = locked or {}
    stale = sorted(n for n in packages if n in locked and locked[n] != packages[n])
    new = sorted(n for n in packages if locked.get(n) != packages[n])
    if not new:
        host.noop("locked: " + ", ".join(f"{n}-{packages[n]}" for n in sorted(packages)))
        return
    if stale:
        yield f"dnf versionlock delete {' '.join(shlex.quote(n) for n in stale)}"
    yield "dnf versionlock add " + " ".join(shlex.quote(f"{n}-{packages[n]}") for n in new)
