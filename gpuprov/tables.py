"""Data tables (GPU system profiles, CUDA -> minimum driver, package names per OS and
driver branch) read from YAML files in gpuprov/data/. Adding a GPU or an OS is a data
change; this module only loads, validates and looks up. See docs/data-tables.md.

Lookups that can miss raise `TableError` (a `GpuprovError`, never a bare KeyError), whose
message names what exists, so the static checks can pass it straight to the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from gpuprov.errors import ExitCode, GpuprovError

OpenModules = Literal["required", "recommended", "unsupported"]
Modules = Literal["open", "proprietary"]


class TableError(GpuprovError):
    """A lookup in the data tables found nothing (unknown profile, OS, branch, CUDA).
    Such names come from the inventory or arguments, hence bad input."""

    exit_code = ExitCode.BAD_INPUT


@dataclass(frozen=True)
class SystemProfile:
    """A GPU system as sold: what `lspci` and `nvidia-smi` should show on a healthy host."""

    name: str  # "hgx-h100-8"
    description: str
    gpu_model: str  # nvidia-smi "Product Name", e.g. "NVIDIA H100 80GB HBM3"
    gpu_pci_ids: tuple[str, ...]  # "10de:2330" (vendor:device, lower case)
    gpu_count: int
    nvswitch: bool
    nvswitch_pci_ids: tuple[str, ...] = ()
    nvswitch_count: int = 0
    min_driver_branch: int = 0
    open_modules: OpenModules = "recommended"
    # Extra packages an NVSwitch generation needs besides fabric manager (B200: nvlsm...).
    extra_packages: tuple[str, ...] = ()
    # Every accepted nvidia-smi "Product Name" (40GB/80GB variants); includes gpu_model.
    gpu_models: tuple[str, ...] = ()
    # Some GPUs need a later version than their branch's first (B200: 570.133.20).
    min_driver_version: str | None = None


@dataclass(frozen=True)
class PackageSet:
    """The packages of one driver pin on one OS, named as its package manager wants them."""

    os_id: str
    manager: Literal["apt", "dnf"]
    driver: str  # apt: meta package; dnf: module stream "nvidia-driver:580-open"
    driver_version: str  # "580.95.05-1", "580.95.05-0ubuntu1"
    kernel_module: str
    fabricmanager: str
    fabricmanager_version: str  # must equal the driver version (service refuses otherwise)
    persistenced: str
    container_toolkit: str
    # dnf: the stream's main package (pinned beside the stream) and the versionlock
    # plugin's package; None for apt (the meta package is `driver`, apt-mark holds).
    driver_package: str | None = None
    version_lock: str | None = None

    def spec(self, name: str, version: str) -> str:
        """`name=version` for apt, `name-version` for dnf."""
        return f"{name}={version}" if self.manager == "apt" else f"{name}-{version}"

    @property
    def fabricmanager_spec(self) -> str:
        return self.spec(self.fabricmanager, self.fabricmanager_version)

    @property
    def driver_spec(self) -> str:
        if self.manager == "dnf":
            return self.driver  # a module stream is not versioned per package
        return self.spec(self.driver, self.driver_version)

    def dcgm(self, cuda_major: str | int) -> str:
        return dcgm_package(self.os_id, cuda_major)

    def cuda_toolkit(self, cuda: str) -> str:
        return cuda_toolkit_package(self.os_id, cuda)


# ---- loading ---------------------------------------------------------------------------


def _read(name: str) -> dict[str, Any]:
    from ruamel.yaml import YAML

    text = resources.files("gpuprov.data").joinpath(name).read_text(encoding="utf-8")
    return YAML(typ="safe").load(text)


@cache
def profiles() -> dict[str, SystemProfile]:
    """All GPU system profiles by name (gpuprov/data/profiles.yaml)."""
    out = {}
    for name, raw in _read("profiles.yaml")["profiles"].items():
        fields = dict(raw)
        for key in ("gpu_pci_ids", "nvswitch_pci_ids", "extra_packages", "gpu_models"):
            fields[key] = tuple(fields.get(key) or ())
        if not fields["gpu_models"]:
            fields["gpu_models"] = (fields["gpu_model"],)
        out[name] = SystemProfile(name=name, **fields)
    return out


def get_profile(name: str) -> SystemProfile:
    """The profile called `name`; raises TableError listing the known ones."""
    known = profiles()
    if name not in known:
        raise TableError(f"unknown GPU profile {name!r} (known: {', '.join(sorted(known))})")
    return known[name]


@cache
def _cuda() -> dict[str, Any]:
    return _read("cuda.yaml")


def cuda_versions() -> list[str]:
    """CUDA toolkit versions in the table, oldest first."""
    return sorted(_cuda()["toolkits"], key=version_key)


def cuda_min_driver(cuda: str) -> str:
    """The minimum driver version for CUDA toolkit `cuda` ("12.8" -> "570.26")."""
    toolkits = _cuda()["toolkits"]
    if cuda not in toolkits:
        raise TableError(f"unknown CUDA version {cuda!r} (known: {', '.join(cuda_versions())})")
    return str(toolkits[cuda]["min_driver"])


def cuda_compat_branch(cuda: str) -> int | None:
    """Minor-version compatibility: the lowest driver branch any toolkit of `cuda`'s
    major runs on (13.x -> 580, 12.x -> 525), or None for an unknown major."""
    major = cuda.split(".")[0]
    value = _cuda()["minor_version_compat"].get(major)
    return int(value) if value is not None else None


def version_key(version: str) -> tuple[int, ...]:
    """ "580.95.05" -> (580, 95, 5) for comparisons."""
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def driver_supports_cuda(driver_version: str, cuda: str) -> bool:
    """True when a driver runs toolkit `cuda`: at least its table minimum."""
    return version_key(driver_version) >= version_key(cuda_min_driver(cuda))


# ---- packages ---------------------------------------------------------------------------


@cache
def _packages() -> dict[str, Any]:
    return _read("packages.yaml")


def os_ids() -> list[str]:
    return list(_packages()["os"])


def _os(os_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    data = _packages()
    if os_id not in data["os"]:
        raise TableError(f"unknown OS {os_id!r} (known: {', '.join(data['os'])})")
    osd = data["os"][os_id]
    # An OS may rename some of its family's packages (Ubuntu's own driver packaging).
    return osd, {**data["families"][osd["family"]], **(osd.get("names") or {})}


def os_branches(os_id: str) -> list[int]:
    return [int(b) for b in _os(os_id)[0]["branches"]]


def package_manager(os_id: str) -> Literal["apt", "dnf"]:
    return _os(os_id)[1]["manager"]


def packages_for(os_id: str, branch: str, version: str, modules: Modules) -> PackageSet:
    """Exact package names and versions of driver `version` (branch `branch`) on `os_id`.

    Raises TableError when the OS is unknown, the branch has no packages for it, the
    version is not of the branch, or `modules` is not open/proprietary."""
    osd, fam = _os(os_id)
    if modules not in ("open", "proprietary"):
        raise TableError(f"kernel modules must be 'open' or 'proprietary', got {modules!r}")
    if not str(branch).isdigit():
        raise TableError(f"driver branch must be a number like '580', got {branch!r}")
    if not version.startswith(f"{branch}."):
        raise TableError(f"driver version {version!r} is not of branch {branch}")
    b = int(branch)
    if b not in osd["branches"]:
        raise TableError(
            f"driver branch {branch} has no packages for {os_id} "
            f"(branches: {', '.join(str(x) for x in osd['branches'])})"
        )
    subst = {"branch": branch, "version": version}
    fm = _fabricmanager_rule(fam["fabricmanager"], b)
    return PackageSet(
        os_id=os_id,
        manager=fam["manager"],
        driver=fam["driver"][modules].format(**subst),
        driver_version=osd["driver_version"].format(**subst),
        kernel_module=fam["kernel_module"][modules].format(**subst),
        fabricmanager=fm["name"].format(**subst),
        fabricmanager_version=fm["version"].format(**subst),
        persistenced=fam["persistenced"].format(**subst),
        container_toolkit=fam["container_toolkit"].format(**subst),
        driver_package=fam.get("driver_package"),
        version_lock=fam.get("version_lock"),
    )


def _fabricmanager_rule(rules: list[dict[str, Any]], branch: int) -> dict[str, Any]:
    for rule in rules:
        if rule.get("min_branch", 0) <= branch <= rule.get("max_branch", 10**6):
            return rule
    raise TableError(f"no fabric manager package rule covers branch {branch}")


def dcgm_package(os_id: str, cuda_major: str | int) -> str:
    """DCGM 4 for a CUDA major ("datacenter-gpu-manager-4-cuda13")."""
    major = str(cuda_major).split(".")[0]
    if major not in ("11", "12", "13"):
        raise TableError(f"DCGM 4 has no package for CUDA major {major!r} (11, 12, 13)")
    return _os(os_id)[1]["dcgm"].format(cuda_major=major)


def cuda_toolkit_package(os_id: str, cuda: str) -> str:
    """The toolkit package of CUDA `cuda` ("12.8" -> "cuda-toolkit-12-8")."""
    cuda_min_driver(cuda)  # unknown versions have no package
    major, minor = cuda.split(".")[:2]
    return _os(os_id)[1]["cuda_toolkit"].format(cuda_major=major, cuda_minor=minor)


def runtime_packages(os_id: str, runtime: str) -> tuple[str, ...]:
    """Packages of container runtime `runtime` on `os_id`: the first is the one to install,
    any of them already installed counts ("docker" on Debian: docker.io, docker-ce)."""
    runtimes = _os(os_id)[1].get("runtimes", {})
    if runtime not in runtimes:
        raise TableError(
            f"no packages for container runtime {runtime!r} (known: {', '.join(runtimes)})"
        )
    return tuple(runtimes[runtime])


def runtime_extra_packages(os_id: str, runtime: str) -> tuple[str, ...]:
    """Packages installed with runtime `runtime` on `os_id` beside its own (Debian 13's
    docker: docker-cli, split out of docker.io); empty for most."""
    extras = _os(os_id)[0].get("runtime_extras") or {}
    return tuple(extras.get(runtime, ()))
