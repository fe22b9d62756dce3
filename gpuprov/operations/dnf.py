"""dnf (RHEL/Rocky 9): NVIDIA's driver module streams at an exact release, exact
installs, versionlock."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import OperationError

from gpuprov.operations.debversion import compare

DNF = "dnf -y -q"


def stale_locks(
    packages: Mapping[str, str], locked: Mapping[str, str], replaced_version: str | None
) -> list[str]:
    """Locked names that would keep `packages` from being installed: a wanted name locked
    at another version, and every lock on the release being replaced ("580.95.05": the
    rest of its driver packages, locked by `versionlock_command`)."""
    out = {n for n, v in locked.items() if n in packages and v != packages[n]}
    if replaced_version:
        out |= {
            n for n, v in locked.items()
            if v.startswith(f"{replaced_version}-") and v != packages.get(n)
        }  # fmt: skip
    return sorted(out)


@operation()
def dnf_driver_install(
    stream: str,
    packages: Mapping[str, str],
    profile: str | None = None,
    extra: tuple[str, ...] = (),
    current_stream: str | None = None,
    installed: dict[str, str] | None = None,
    locked: dict[str, str] | None = None,
    replaced_version: str | None = None,
):
    """
    Install a driver module stream's profile with its packages at exact versions, in one
    transaction (the stream's newer releases of the branch stay out): the versionlocks
    that would block it deleted first, the stream enabled (reset first when another one
    is), then `dnf install @stream/profile name-version...`.

    + stream: "module:stream" ("nvidia-driver:580-open")
    + packages: name -> exact version-release (the driver set, fabric manager included)
    + profile: module profile ("fm" adds fabric manager on NVSwitch systems)
    + extra: packages installed in the same transaction at any version (versionlock)
    + current_stream: the host's stream now ("570-open"), None when none is
    + installed: name -> installed version-release (HostState)
    + locked: name -> version-release locked now (HostState, dnf versionlock)
    + replaced_version: the driver version installed now, whose locks go when it changes

    **Example:**

    .. code:: python

        dnf_driver_install(stream="nvidia-driver:580-open", profile="fm",
                           packages={"nvidia-driver": "580.95.05-1.el9"})
    """
    module, _, wanted = stream.partition(":")
    if not module or not wanted:
        raise OperationError(f"module stream must be 'module:stream', got {stream!r}")
    installed = installed or {}
    changes = {n: v for n, v in packages.items() if installed.get(n) != v}
    missing = [n for n in extra if n not in installed]
    if current_stream == wanted and not changes and not missing:
        host.noop(
            f"module {stream} installed at "
            + ", ".join(f"{n}-{packages[n]}" for n in sorted(packages))
        )
        return
    downgrades = [
        f"{n} {installed[n]} -> {v}"
        for n, v in changes.items()
        if n in installed and compare(installed[n], v) > 0
    ]
    if downgrades:
        raise OperationError(
            "refusing to downgrade " + ", ".join(sorted(downgrades))
            + ": remove the driver packages first"
        )  # fmt: skip
    stale = stale_locks(packages, locked or {}, replaced_version)
    if stale:
        yield f"dnf versionlock delete {' '.join(shlex.quote(n) for n in stale)}"
    if current_stream and current_stream != wanted:
        yield f"{DNF} module reset {shlex.quote(module)}"
    yield f"{DNF} module enable {shlex.quote(stream)}"
    spec = f"@{stream}/{profile or 'default'}"
    pins = [f"{n}-{v}" for n, v in sorted(packages.items())]
    yield f"{DNF} install --allowerasing " + " ".join(map(shlex.quote, [spec, *pins, *missing]))


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


DRIVER_NAME_GLOBS = ("nvidia-*", "libnvidia-*", "kmod-nvidia-*")  # NVIDIA's driver packaging


@operation()
def dnf_versionlock(
    packages: dict[str, str],
    version: str,
    installed: dict[str, str] | None = None,
    locked: dict[str, str] | None = None,
    changing: bool = False,
):
    """
    Lock the driver at its release (`dnf versionlock add`): the named packages at their
    versions, and every other installed package of NVIDIA's driver packaging at exactly
    that driver version, so a later `dnf update` moves none of them.

    + packages: name -> version-release to lock (the driver set, fabric manager included)
    + version: the driver version ("580.95.05")
    + installed: name -> installed version-release now (HostState)
    + locked: name -> locked version-release now (HostState)
    + changing: the driver's packages change in this apply (what is installed then is
      only known on the host: the lock reads it there)
    """
    installed, locked = installed or {}, locked or {}
    same_release = {
        n: v for n, v in installed.items()
        if v.startswith(f"{version}-") and n.startswith(tuple(g[:-1] for g in DRIVER_NAME_GLOBS))
    }  # fmt: skip
    want = {**same_release, **packages}
    if not changing and all(locked.get(n) == v for n, v in want.items()):
        host.noop("locked: " + ", ".join(f"{n}-{want[n]}" for n in sorted(want)))
        return
    names = " ".join(shlex.quote(f"{n}-{v}") for n, v in sorted(packages.items()))
    globs = " ".join(shlex.quote(g) for g in DRIVER_NAME_GLOBS)
    # The named packages and the release's others, as the host has them after the
    # install, once each (versionlock writes an entry per argument, duplicates too).
    yield (
        f"dnf versionlock add $({{ printf '%s\\n' {names}; rpm -qa --qf "
        f"'%{{NAME}}-%{{VERSION}}-%{{RELEASE}}\\n' {globs} | grep -F -e "
        f"{shlex.quote(f'-{version}-')}; }} | sort -u)"
    )
