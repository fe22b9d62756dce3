"""Which packages a bundle carries per target OS, derived from the inventory with the
deploys' own functions and the data tables (never listed by hand):

- every GPU host: the driver transaction (deploys/driver.py's `driver_packages`: driver,
  kernel module package, persistenced, fabric manager on NVSwitch systems, at the pinned
  version), kernel headers (the hosts' kernels from `gpuprov facts`, else the default
  flavour's meta package; none where facts say the headers are installed, as the driver
  deploy then installs none), the stack's CUDA toolkits, the container runtime's first
  package name, nvidia-container-toolkit and DCGM for the stack's CUDA major;
- the mirror host: its own services' packages (gpuprov/data/bundle.yaml).

The closure of these names is apt's business (gpuprov/bundle/aptroot.py), or dnf's on
RHEL (gpuprov/bundle/dnfroot.py: the driver is a module stream there, its main package
pinned beside it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from gpuprov import tables
from gpuprov.errors import InputError, Location, Problem
from gpuprov.inventory.bundle import BundleSpec, BundleTarget
from gpuprov.inventory.model import Cluster, Host

KERNEL_RE = re.compile(r"[0-9][A-Za-z0-9.+_~-]{0,127}")
MAX_FACTS_BYTES = 64 * 1024 * 1024


@cache
def bundle_data() -> dict[str, Any]:
    from ruamel.yaml import YAML

    text = resources.files("gpuprov.data").joinpath("bundle.yaml").read_text(encoding="utf-8")
    return YAML(typ="safe").load(text)


def os_data(os_id: str) -> dict[str, Any]:
    data = bundle_data()["os"]
    if os_id not in data:
        raise tables.TableError(f"no bundle data for OS {os_id!r} (known: {', '.join(data)})")
    return data[os_id]


@dataclass
class OsPackages:
    """What a bundle resolves for one OS: per host, the names (and exact pins) its deploys
    install. Hosts may differ (a canary group on a newer driver, proprietary modules on
    one group): each distinct set is resolved as its own apt transaction, as on the
    hosts, and the bundle carries the union of their closures."""

    os_id: str
    manager: str  # apt | dnf
    hosts: dict[str, dict[str, str | None]] = field(default_factory=dict)  # host -> name -> pin
    notes: dict[str, list[str]] = field(default_factory=dict)  # name -> why (hosts)

    def add(self, host: str, name: str, version: str | None, why: str | None = None) -> None:
        self.hosts.setdefault(host, {})[name] = version
        self.notes.setdefault(name, []).append(why or host)

    @property
    def wanted(self) -> dict[str, str | None]:
        """name -> its pin when every host agrees (None: unpinned or pinned differently)."""
        out: dict[str, str | None] = {}
        for want in self.hosts.values():
            for name, version in want.items():
                out[name] = version if out.get(name, version) == version else None
        return dict(sorted(out.items()))

    def _spec(self, name: str, version: str | None) -> str:
        sep = "=" if self.manager == "apt" else "-"
        return name if version is None else f"{name}{sep}{version}"

    def transactions(self) -> list[list[str]]:
        """The distinct per-host sets of `name=version` (apt) / `name-version` (dnf)."""
        sets = {
            tuple(sorted(self._spec(n, v) for n, v in want.items())) for want in self.hosts.values()
        }
        return [list(t) for t in sorted(sets)]

    def specs(self) -> list[str]:
        """Every spec of every host, sorted (what the build reports)."""
        return sorted({spec for t in self.transactions() for spec in t})


def read_facts(path: Path) -> dict[str, dict[str, Any]]:
    """`gpuprov facts --output json` output: host -> {os, kernel, headers_installed}."""
    where = Location(str(path))
    try:
        if path.stat().st_size > MAX_FACTS_BYTES:
            raise InputError([Problem(where, "facts file larger than 64 MiB")])
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            [Problem(where, f"not a `gpuprov facts --output json` file: {exc}")]
        ) from None
    if not isinstance(data, dict):
        raise InputError([Problem(where, "expected a JSON object of host -> facts")])
    out = {}
    for host, facts in data.items():
        if not isinstance(facts, dict) or not facts.get("ok", True):
            continue  # a host whose facts could not be read says nothing about kernels
        kernel = facts.get("kernel")
        if kernel is not None and (not isinstance(kernel, str) or not KERNEL_RE.fullmatch(kernel)):
            raise InputError([Problem(where, f"{host}: bad kernel release {kernel!r}")])
        out[str(host)] = facts
    return out


def _headers(pkgs: OsPackages, target: BundleTarget, hosts: list[Host]) -> None:
    from gpuprov.deploys.driver import headers_package

    data = os_data(target.os_id)
    facts = read_facts(target.base.facts) if target.base.facts is not None else {}
    for host in hosts:
        f = facts.get(host.name)
        if f is None or not f.get("kernel"):
            # No facts for this host: the default flavour's headers (follows its kernel).
            pkgs.add(
                host.name,
                data["kernel_headers_default"],
                None,
                f"{host.name}: default kernel headers",
            )
        elif not f.get("headers_installed"):  # else the driver deploy installs none either
            kernel = f["kernel"]
            name = (
                headers_package(kernel)
                if pkgs.manager == "apt"
                else data["kernel_headers"].format(kernel=kernel)
            )
            pkgs.add(host.name, name, None, f"{host.name}: headers of its kernel {kernel}")


def _gpu_host(pkgs: OsPackages, host: Host) -> None:
    from gpuprov.checks import resolve_modules
    from gpuprov.deploys.dcgm import stack_cuda_major
    from gpuprov.deploys.driver import driver_packages

    stack = host.stack
    assert stack is not None
    profile = tables.get_profile(host.profile) if host.profile else None
    modules = resolve_modules(stack, profile)
    ps = tables.packages_for(pkgs.os_id, stack.driver.branch, stack.driver.version, modules)
    nvswitch = bool(profile and profile.nvswitch)
    for name, version in driver_packages(ps, nvswitch).items():
        # dnf: the driver is a module stream, resolved as such (dnfroot.py), whose
        # profile brings the driver's packages; its main package (named as the module,
        # NVIDIA's convention) is pinned beside it, so the stream's newer releases stay out.
        if pkgs.manager == "dnf" and name == ps.driver:
            pkgs.add(host.name, name, None)
            pkgs.add(host.name, name.split(":")[0], version)
        else:
            pkgs.add(host.name, name, version)
    if ps.version_lock:  # the driver deploy holds the driver with dnf's versionlock plugin
        pkgs.add(host.name, ps.version_lock, None)
    for cuda in stack.cuda:
        pkgs.add(host.name, ps.cuda_toolkit(cuda), None)
    if stack.container_runtime != "none":
        pkgs.add(host.name, tables.runtime_packages(pkgs.os_id, stack.container_runtime)[0], None)
    pkgs.add(host.name, ps.container_toolkit, None)
    if stack.dcgm:
        pinned = host.vars.get("gpuprov_dcgm_version")
        pkgs.add(host.name, ps.dcgm(stack_cuda_major(stack)), str(pinned) if pinned else None)


def host_os(host: Host, spec: BundleSpec) -> str | None:
    if host.role == "gpu":
        if host.stack and host.stack.os:
            return host.stack.os
        return next(iter(spec.targets)) if len(spec.targets) == 1 else None
    if host.role == "mirror":
        if spec.mirror_os:
            return spec.mirror_os
        return next(iter(spec.targets)) if len(spec.targets) == 1 else None
    return None


def wanted_packages(cluster: Cluster) -> dict[str, OsPackages]:
    """os id -> what the bundle must carry for it, for every host of `cluster`."""
    spec = cluster.bundle
    where = Location(str(cluster.path))
    if spec is None or not spec.targets:
        raise InputError([Problem(where, "no `cluster.bundle.targets:` in the inventory "
                                  "(the upstream sources per OS; docs/inventory.md)")])  # fmt: skip
    out = {os_id: OsPackages(os_id, tables.package_manager(os_id)) for os_id in spec.targets}
    problems = []
    gpu_hosts: dict[str, list[Host]] = {}
    for host in cluster.hosts.values():
        if host.role == "controller":
            continue
        os_id = host_os(host, spec)
        if os_id is None:
            problems.append(Problem(host.location, f"{host.name}: cannot tell its OS for the bundle; "
                                    "set stack.os (gpu) or bundle.mirror_os (mirror)"))  # fmt: skip
            continue
        if os_id not in out:
            problems.append(Problem(host.location, f"{host.name} runs {os_id}, which "
                                    f"cluster.bundle.targets does not list"))  # fmt: skip
            continue
        if host.role == "gpu":
            _gpu_host(out[os_id], host)
            gpu_hosts.setdefault(os_id, []).append(host)
        else:
            for name in os_data(os_id)["mirror_host"]:
                out[os_id].add(host.name, name, None, f"{host.name} (mirror host)")
    if problems:
        raise InputError(problems)
    for os_id, hosts in gpu_hosts.items():
        _headers(out[os_id], spec.targets[os_id], hosts)
    return {k: v for k, v in out.items() if v.hosts}
