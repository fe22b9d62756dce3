"""NVIDIA driver: the host's pinned branch and exact version, held, and loaded.

Runbook:
1. Kernel headers for the running kernel when missing (DKMS builds need them; a kernel
   upgrade without headers is how drivers silently disappear).
2. The driver meta package, its kernel module package (open or proprietary, from the
   GPU profile via resolve_modules) and nvidia-persistenced, at exactly the pinned version
   from the site mirror; on NVSwitch systems fabric manager at the *same* version in the
   *same* transaction (it depends on the exact driver version; split, apt would have to
   remove one or the other). The previous branch's packages go in that transaction too.
   Everything is held (apt-mark hold / dnf versionlock). On RHEL the driver is a module
   stream: the stream's profile and the exact packages in one `dnf install` (so the
   stream's newer releases stay out), dnf's versionlock plugin in the same transaction,
   then every package of the release locked (old locks deleted before the install).
3. One controlled reboot when the loaded module differs from the installed version (or
   nouveau was loaded): waits for the host and reconnects; never the control node.
4. nvidia-persistenced enabled and running.
"""

from __future__ import annotations

from gpuprov.deploys.context import NodeContext
from pyinfra.api import deploy

from gpuprov import tables
from gpuprov.operations.dnf import dnf_driver_install, dnf_versionlock
from gpuprov.operations.service import service_running
from gpuprov.operations.system import controlled_reboot


def wanted_packages(ctx: NodeContext) -> dict[str, str]:
    """name -> exact version of everything the driver transaction installs."""
    return driver_packages(ctx.pkgs, ctx.nvswitch)


def driver_packages(p: tables.PackageSet, nvswitch: bool) -> dict[str, str]:
    """The driver transaction of one package set (also what a bundle carries for it)."""
    want = {p.driver: p.driver_version, p.kernel_module: p.driver_version}
    want[p.persistenced] = p.driver_version
    if nvswitch:
        want[p.fabricmanager] = p.fabricmanager_version
    return want


def headers_package(kernel: str) -> str:
    """The headers package of a running kernel on apt systems (DKMS builds need it)."""
    return f"linux-headers-{kernel}"


def replaced_packages(ctx: NodeContext, keep: dict[str, str]) -> list[str]:
    """Installed NVIDIA packages of *other* branches or the other module flavour (by the
    names the data tables give them), which the new packages replace."""
    names: set[str] = set()
    for branch in tables.os_branches(ctx.os_key):
        for flavour in ("open", "proprietary"):
            other = tables.packages_for(ctx.os_key, str(branch), f"{branch}.0", flavour)
            names |= {other.driver, other.kernel_module, other.fabricmanager}
    return sorted(n for n in names if n in ctx.installed and n not in keep)


def reboot_reasons(ctx: NodeContext) -> list[str]:
    """Why the host must reboot after this apply's driver step (nouveau adds its own)."""
    want = ctx.stack.driver.version
    loaded = ctx.state.nvidia_module_version
    reasons = []
    if loaded and loaded != want:
        reasons.append(f"driver {want} installed while {loaded} is loaded")
    elif ctx.state.nvidia_smi.version_mismatch:
        reasons.append("nvidia-smi reports a driver/library version mismatch")
    return reasons


@deploy("NVIDIA driver")
def driver(ctx: NodeContext) -> None:
    want = wanted_packages(ctx)
    installed = ctx.installed
    # dnf: the stream is no package; its main package stands for it.
    exact = want if ctx.apt else dnf_pinned_driver(ctx, want)
    ctx.driver_changing = any(installed.get(n) != v for n, v in exact.items())
    fm = ctx.pkgs.fabricmanager
    ctx.fabricmanager_changing = ctx.nvswitch and installed.get(fm) != want.get(fm)
    if ctx.apt:
        headers = headers_package(str(ctx.state.kernel))
        need_headers = not ctx.state.headers_present and "headers" not in (
            ctx.var("gpuprov_preflight_ignore") or ()
        )
        ctx.install(
            f"Kernel headers for {ctx.state.kernel}",
            {headers: None} if need_headers else {},
            hold=False,
        )
        ctx.install(
            f"NVIDIA driver {ctx.stack.driver.version} ({ctx.modules} modules), held",
            want,
            remove=replaced_packages(ctx, want),
        )
    else:
        _dnf_driver(ctx, want)
    ctx.reboot_reasons.extend(reboot_reasons(ctx))


def dnf_pinned_driver(ctx: NodeContext, want: dict[str, str]) -> dict[str, str]:
    """name -> exact version-release of the dnf driver transaction: the stream's main
    package (named as its module) instead of the stream, fabric manager at the same
    driver version."""
    main = ctx.pkgs.driver_package or ctx.pkgs.driver.split(":")[0]
    return {(main if n == ctx.pkgs.driver else n): v for n, v in want.items()}


def _dnf_driver(ctx: NodeContext, want: dict[str, str]) -> None:
    """RHEL/Rocky 9: the driver is a module stream, installed at the pinned release (not
    the stream's newest) with fabric manager in the same transaction, then locked."""
    stream = ctx.pkgs.driver  # "nvidia-driver:580-open"
    installed = ctx.installed
    pinned = dnf_pinned_driver(ctx, want)
    current = replaced = None
    kmod = installed.get(ctx.pkgs.kernel_module)
    if kmod:
        suffix = "open" if ctx.modules == "open" else "dkms"
        current = f"{kmod.split('.')[0]}-{suffix}"
        replaced = kmod.split("-")[0]  # "580.95.05" of "580.95.05-1.el9"
    lock = (ctx.pkgs.version_lock,) if ctx.pkgs.version_lock else ()
    version = ctx.stack.driver.version
    dnf_driver_install(
        name=f"NVIDIA driver {version} (module {stream}, exact release)",
        stream=stream,
        packages=pinned,
        profile="fm" if ctx.nvswitch else None,
        extra=lock,
        current_stream=current,
        installed=installed,
        locked=ctx.state.locked,
        replaced_version=replaced if replaced != version else None,
    )
    dnf_versionlock(
        name=f"Lock the driver at {version} (dnf versionlock)",
        packages=pinned,
        version=version,
        installed=installed,
        locked=ctx.state.locked,
        changing=ctx.driver_changing,
    )


@deploy("Load the driver")
def driver_loaded(ctx: NodeContext) -> None:
    controlled_reboot(
        name="Reboot once to load the new kernel module",
        reasons=list(dict.fromkeys(ctx.reboot_reasons)),
        delay=int(ctx.var("gpuprov_reboot_delay", 5)),
        reboot_timeout=int(ctx.var("gpuprov_reboot_timeout", 900)),
    )
    svc = ctx.service("nvidia-persistenced")
    service_running(
        name="nvidia-persistenced enabled and running (persistence mode)",
        unit="nvidia-persistenced",
        restart=ctx.driver_changing and not ctx.reboot_reasons,
        active_now=svc.active,
        enabled_now=svc.enabled,
    )
