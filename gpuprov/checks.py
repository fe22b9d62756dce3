"""Static checks: what can be known wrong from the inventory and the data tables alone,
before any SSH connection (a bad plan must fail in a second, not mid-install on host 37).

Each finding names the inventory line it comes from (the driver, cuda, rollout or host
node). Severities: "error" (the plan cannot work), "warning" (it works with limits),
"note" (something gpuprov will do that the file does not say, e.g. fabric manager).
"""

from __future__ import annotations

import contextlib

from gpuprov.errors import Location, Problem
from gpuprov.inventory.model import Cluster, Host, Stack
from gpuprov.tables import (
    Modules,
    SystemProfile,
    TableError,
    cuda_compat_branch,
    cuda_min_driver,
    cuda_toolkit_package,
    dcgm_package,
    get_profile,
    packages_for,
    version_key,
)


def resolve_modules(stack: Stack, profile: SystemProfile | None) -> Modules:
    """'open' or 'proprietary' for a host: `auto` picks open where the GPU requires or
    recommends it (Turing and newer, all profiles we ship), proprietary otherwise."""
    if stack.driver.modules == "open" or stack.driver.modules == "proprietary":
        return stack.driver.modules
    if profile is None or profile.open_modules in ("required", "recommended"):
        return "open"
    return "proprietary"


# Preflight's checks by their stable codes (what `gpuprov_preflight_ignore` takes), most
# fundamental first: the OS decides every package name; GPUs that are not there make the
# rest moot; disk and headers are what the driver build needs; Secure Boot only matters
# once modules load. deploys/preflight.py reports refusals in this order.
PREFLIGHT_CHECKS = ("os", "stack_os", "gpus", "disk", "headers", "secure_boot")


class _Findings:
    def __init__(self) -> None:
        self.items: list[Problem] = []
        self._seen: set[tuple[Location, str, str]] = set()

    def add(self, location: Location, message: str, severity: str = "error") -> None:
        key = (location, message, severity)
        if key not in self._seen:
            self._seen.add(key)
            self.items.append(Problem(location, message, severity))


def static_checks(cluster: Cluster) -> list[Problem]:
    """Every finding for `cluster`, errors and warnings and notes, in file order."""
    out = _Findings()
    no_os: list[Host] = []
    for host in cluster.gpu_hosts():
        if host.stack is None:
            continue
        profile = None
        if host.profile:
            try:
                profile = get_profile(host.profile)
            except TableError as exc:
                out.add(host.location, str(exc))
        _check_host(out, host, host.stack, profile)
        if host.stack.os is None:
            no_os.append(host)
    if no_os:
        out.add(
            no_os[0].stack.location if no_os[0].stack else no_os[0].location,
            f"no `stack.os` for {len(no_os)} gpu host(s) ({no_os[0].name}...): package names "
            "cannot be checked before facts are gathered",
            "warning",
        )
    for host in cluster.hosts.values():
        _check_preflight_ignore(out, host)
    _check_rollout(out, cluster)
    return sorted(out.items, key=lambda p: (p.location.file, p.location.line, p.location.col))


def _check_host(out: _Findings, host: Host, stack: Stack, profile: SystemProfile | None) -> None:
    drv = stack.driver
    dloc = drv.location
    modules = resolve_modules(stack, profile)
    if profile is not None:
        if profile.open_modules == "required" and modules == "proprietary":
            out.add(dloc, f"{profile.name} needs the open kernel modules; set driver.modules to "
                    "open or auto (proprietary modules do not support this GPU)")  # fmt: skip
        if profile.open_modules == "unsupported" and modules == "open":
            out.add(dloc, f"{profile.name} cannot use the open kernel modules; set driver.modules "
                    "to proprietary or auto")  # fmt: skip
        if drv.branch.isdigit() and int(drv.branch) < profile.min_driver_branch:
            out.add(dloc, f"driver branch {drv.branch} is below the minimum for {profile.name} "
                    f"(branch {profile.min_driver_branch} or later)")  # fmt: skip
        elif profile.min_driver_version and version_key(drv.version) < version_key(
            profile.min_driver_version
        ):
            out.add(dloc, f"driver {drv.version} is older than the first that supports "
                    f"{profile.name} ({profile.min_driver_version})")  # fmt: skip
        if profile.nvswitch:
            fm = "fabric manager"
            if stack.os:
                with contextlib.suppress(TableError):  # reported by the package check below
                    fm = packages_for(stack.os, drv.branch, drv.version, modules).fabricmanager_spec  # type: ignore[arg-type]
            extra = f" and {', '.join(profile.extra_packages)}" if profile.extra_packages else ""
            out.add(dloc, f"{profile.name} has NVSwitch: {fm}{extra} will be installed and held "
                    f"at driver {drv.version} (they must match)", "note")  # fmt: skip
    for cuda in stack.cuda:
        _check_cuda(out, stack, cuda)
    if stack.os:
        try:
            packages_for(stack.os, drv.branch, drv.version, modules)  # type: ignore[arg-type]
        except TableError as exc:
            out.add(dloc, str(exc))
        for cuda in stack.cuda:
            try:
                cuda_toolkit_package(stack.os, cuda)
                if stack.dcgm:
                    dcgm_package(stack.os, cuda.split(".")[0])
            except TableError:
                pass  # unknown CUDA versions are reported by _check_cuda


def _check_preflight_ignore(out: _Findings, host: Host) -> None:
    """A misspelt code would silently ignore nothing: name it, and the codes there are."""
    value = host.vars.get("gpuprov_preflight_ignore")
    if value is None:
        return
    known = ", ".join(PREFLIGHT_CHECKS)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        out.add(host.location, f"{host.name}: gpuprov_preflight_ignore: expected a list of "
                f"check codes ({known}), got {value!r}")  # fmt: skip
        return
    for code in value:
        if code not in PREFLIGHT_CHECKS:
            out.add(host.location, f"{host.name}: gpuprov_preflight_ignore: unknown check "
                    f"{code!r} (known: {known})")  # fmt: skip


def _check_cuda(out: _Findings, stack: Stack, cuda: str) -> None:
    drv = stack.driver
    loc = stack.cuda_location
    try:
        minimum = cuda_min_driver(cuda)
    except TableError as exc:
        out.add(loc, str(exc))
        return
    if version_key(drv.version) >= version_key(minimum):
        return
    compat = cuda_compat_branch(cuda)
    if compat is not None and drv.branch.isdigit() and int(drv.branch) >= compat:
        out.add(loc, f"CUDA {cuda} wants driver {minimum} or later; driver {drv.version} runs it "
                "only under minor-version compatibility (no newer PTX JIT)", "warning")  # fmt: skip
    else:
        out.add(loc, f"CUDA {cuda} needs driver {minimum} or later (branch {minimum.split('.')[0]}); "
                f"driver {drv.version} is too old")  # fmt: skip


def _check_rollout(out: _Findings, cluster: Cluster) -> None:
    gates = cluster.rollout.gates
    loc = cluster.rollout.location
    gpu = [h for h in cluster.gpu_hosts() if h.stack is not None]
    if "container" in gates:
        for h in gpu:
            if h.stack and h.stack.container_runtime == "none":
                out.add(
                    loc,
                    f"rollout gate `container` cannot run on {h.name} (container_runtime: none)",
                )
                break
    if "dcgm-diag" in gates:
        for h in gpu:
            if h.stack and not h.stack.dcgm:
                out.add(loc, f"rollout gate `dcgm-diag` cannot run on {h.name} (dcgm: false)")
                break
    domain = cluster.rollout.failure_domain
    missing = [h.name for h in gpu if domain not in h.domains]
    if gpu and missing and cluster.rollout.max_per_domain is not None:
        out.add(loc, f"failure_domain {domain!r} is not set on {len(missing)} gpu host(s) "
                f"({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}); they count as one domain",
                "warning")  # fmt: skip
