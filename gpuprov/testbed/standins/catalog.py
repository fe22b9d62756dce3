"""The stand-in packages as specs: names, versions and dependency shape from catalog.json.

The shape mirrors NVIDIA's Debian 12 CUDA repository closely enough for apt to face the same
problems as on real hosts: exact-version pins between driver components, fabric manager pinned
to the exact driver version, one branch of a component replacing another on upgrade, the
fabric-manager rename at 580, and DCGM 4 replacing the old DCGM 3 package name.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from gpuprov.errors import InputError, Location, Problem

LABEL = "gpuprov TEST STAND-IN — not the NVIDIA software"
MAINTAINER = "gpuprov test bed <testbed@gpuprov.invalid>"

# Where the stand-ins keep their private Python helpers (one copy per package, so no two
# packages own the same file).
SIMLIB_DIR = "usr/lib/gpuprov-sim"
# libnvidia-compute-<branch>'s libraries, each as <name>.<driver version>.
COMPUTE_LIBS = ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-nvvm.so")
# The "kernel module on disk": what a reboot (gpuprov-sim-load) would load.
MODULE_FILE = "usr/lib/nvidia-sim/module/version"
# The boot-time loader: the test bed runs it to simulate a reboot on hosts without systemd.
SIM_LOAD = "/usr/lib/gpuprov-sim/gpuprov-gpu-sim/gpuprov-sim-load"


@dataclass(frozen=True)
class FileSpec:
    path: str  # inside the package, no leading slash
    source: str  # name of a file in programs/
    mode: int = 0o644
    subst: tuple[tuple[str, str], ...] = ()


@dataclass
class PackageSpec:
    name: str
    version: str
    summary: str
    section: str = "multiverse/devel"
    depends: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    replaces: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    files: list[FileSpec] = field(default_factory=list)
    symlinks: dict[str, str] = field(default_factory=dict)  # path -> target
    scripts: dict[str, str] = field(default_factory=dict)  # postinst -> programs/ source
    script_subst: tuple[tuple[str, str], ...] = ()
    conffiles: list[str] = field(default_factory=list)
    # Control fields the NVIDIA stand-ins never set, needed to re-serve a recorded
    # distribution index (tests/fixtures/ubuntu/): what apt's resolver reads.
    architecture: str = "amd64"
    priority: str = "optional"
    essential: bool = False
    multi_arch: str = ""
    pre_depends: list[str] = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.split(':')[-1]}_{self.architecture}.deb"


@cache
def catalog() -> dict:
    return json.loads(resources.files(__package__).joinpath("catalog.json").read_text())


def driver_releases() -> list[str]:
    return [r["version"] for r in catalog()["driver_releases"]]


def branch_of(version: str) -> str:
    return version.split(".")[0]


def _others(template: str, branch: str) -> list[str]:
    """The same component of every other branch (for Conflicts/Replaces)."""
    return [template.format(b=branch_of(v)) for v in driver_releases() if branch_of(v) != branch]


def _program(pkg: str, path: str, source: str, extra: dict[str, str] | None = None) -> FileSpec:
    librel = posixpath.relpath(f"{SIMLIB_DIR}/{pkg}", posixpath.dirname(path))
    subst = {"@LIBREL@": librel, **(extra or {})}
    return FileSpec(path, source, 0o755, tuple(sorted(subst.items())))


def _simlib(pkg: str) -> FileSpec:
    return FileSpec(f"{SIMLIB_DIR}/{pkg}/simlib.py", "simlib.py")


def _driver_packages(rel: dict) -> list[PackageSpec]:
    v = rel["version"]
    b = branch_of(v)
    dv = f"{v}-1"
    pin = f"(= {dv})"
    subst = {"@VERSION@": v, "@CUDA_VERSION@": rel["cuda_version"]}
    pkgs: list[PackageSpec] = []

    compute = PackageSpec(
        f"libnvidia-compute-{b}",
        dv,
        "NVIDIA libcompute package (NVML, CUDA driver library)",
        section="multiverse/libs",
        conflicts=_others("libnvidia-compute-{b}", b),
        replaces=_others("libnvidia-compute-{b}", b),
        provides=["libnvidia-compute", "libnvidia-ml.so.1", "libcuda.so.1"],
    )
    compute.files.append(
        FileSpec(
            "usr/lib/x86_64-linux-gnu/nvidia-sim/libnvidia-ml.version",
            "lib-version.txt",
            subst=tuple(subst.items()),
        )
    )
    # Where the real package has its libraries: the CDI spec mounts them into containers
    # (placeholders; nothing loads them, the stand-in programs read the version file above).
    compute.files += [
        FileSpec(
            f"usr/lib/x86_64-linux-gnu/{lib}.{v}", "lib-version.txt", subst=tuple(subst.items())
        )
        for lib in COMPUTE_LIBS
    ]
    pkgs.append(compute)

    for flavour, name in (
        ("open", f"nvidia-kernel-open-{b}"),
        ("proprietary", f"nvidia-kernel-{b}"),
    ):
        other_flavour = f"nvidia-kernel-{b}" if flavour == "open" else f"nvidia-kernel-open-{b}"
        blocked = [
            other_flavour,
            *_others("nvidia-kernel-{b}", b),
            *_others("nvidia-kernel-open-{b}", b),
        ]
        kernel = PackageSpec(
            name,
            dv,
            f"NVIDIA kernel modules ({'open' if flavour == 'open' else 'proprietary'} flavour), DKMS",
            section="multiverse/kernel",
            conflicts=blocked,
            replaces=blocked,
            provides=["nvidia-kernel-module", f"nvidia-kernel-{b}-any"],
        )
        kernel.files.append(
            FileSpec(
                MODULE_FILE,
                "module-version.txt",
                subst=tuple({**subst, "@FLAVOUR@": flavour}.items()),
            )
        )
        kernel.scripts["postinst"] = "kernel-postinst.sh"
        kernel.script_subst = tuple({**subst, "@FLAVOUR@": flavour}.items())
        pkgs.append(kernel)

    utils = PackageSpec(
        f"nvidia-utils-{b}",
        dv,
        "NVIDIA driver support binaries (nvidia-smi)",
        section="multiverse/utils",
        depends=[f"libnvidia-compute-{b} {pin}"],
        conflicts=_others("nvidia-utils-{b}", b),
        replaces=_others("nvidia-utils-{b}", b),
        provides=["nvidia-utils"],
    )
    utils.files += [
        _program(utils.name, "usr/bin/nvidia-smi", "nvidia_smi.py", subst),
        _simlib(utils.name),
    ]
    pkgs.append(utils)

    common = [
        f"nvidia-utils-{b} {pin}",
        f"libnvidia-compute-{b} {pin}",
        f"nvidia-persistenced (>= {dv})",
    ]
    pkgs.append(
        PackageSpec(
            f"nvidia-driver-{b}-open",
            dv,
            "NVIDIA driver metapackage (open kernel modules)",
            section="multiverse/metapackages",
            depends=[f"nvidia-kernel-open-{b} {pin}", *common],
            conflicts=[
                f"nvidia-driver-{b}",
                *_others("nvidia-driver-{b}-open", b),
                *_others("nvidia-driver-{b}", b),
            ],
            replaces=_others("nvidia-driver-{b}-open", b),
        )
    )
    pkgs.append(
        PackageSpec(
            f"nvidia-driver-{b}",
            dv,
            "NVIDIA driver metapackage (proprietary kernel modules)",
            section="multiverse/metapackages",
            depends=[f"nvidia-kernel-{b} {pin}", *common],
            conflicts=[
                f"nvidia-driver-{b}-open",
                *_others("nvidia-driver-{b}", b),
                *_others("nvidia-driver-{b}-open", b),
            ],
            replaces=_others("nvidia-driver-{b}", b),
        )
    )
    pkgs.append(
        PackageSpec(
            f"cuda-drivers-{b}",
            dv,
            "CUDA driver metapackage for branch " + b,
            section="multiverse/metapackages",
            depends=[f"nvidia-driver-{b} {pin}", f"nvidia-persistenced (>= {dv})"],
            conflicts=_others("cuda-drivers-{b}", b),
            replaces=_others("cuda-drivers-{b}", b),
        )
    )

    pers = PackageSpec(
        "nvidia-persistenced",
        dv,
        "daemon to maintain persistent software state in the NVIDIA driver",
        section="multiverse/utils",
        depends=[f"libnvidia-compute-{b} (>= {dv}) | libnvidia-compute"],
    )
    pers.files += [
        _program(pers.name, "usr/bin/nvidia-persistenced", "nvidia_persistenced.py", subst),
        _simlib(pers.name),
        FileSpec("lib/systemd/system/nvidia-persistenced.service", "nvidia-persistenced.service"),
    ]
    pers.scripts["postinst"] = "enable-postinst.sh"
    pers.script_subst = (("@UNIT@", "nvidia-persistenced.service"),)
    pkgs.append(pers)

    fm_name = rel["fabricmanager_name"]
    old_names = [
        r["fabricmanager_name"]
        for r in catalog()["driver_releases"]
        if r["fabricmanager_name"] != fm_name
    ]
    fm = PackageSpec(
        fm_name,
        dv,
        "Fabric Manager for NVSwitch based systems",
        section="multiverse/utils",
        depends=[f"libnvidia-compute-{b} {pin}"],
        conflicts=old_names,
        replaces=old_names,
        provides=["nvidia-fabricmanager-any"],
    )
    fm.files += [
        _program(fm.name, "usr/bin/nv-fabricmanager", "nv_fabricmanager.py", subst),
        _simlib(fm.name),
        FileSpec("lib/systemd/system/nvidia-fabricmanager.service", "nvidia-fabricmanager.service"),
        FileSpec("usr/share/nvidia/nvswitch/fabricmanager.cfg", "fabricmanager.cfg"),
    ]
    fm.conffiles.append("/usr/share/nvidia/nvswitch/fabricmanager.cfg")
    pkgs.append(fm)
    return pkgs


def _container_toolkit() -> list[PackageSpec]:
    v = catalog()["container_toolkit"]["version"]
    lib = PackageSpec(
        "libnvidia-container1", v, "NVIDIA container runtime library", section="utils"
    )
    tools = PackageSpec(
        "libnvidia-container-tools",
        v,
        "NVIDIA container runtime library (command-line tools)",
        section="utils",
        depends=[f"libnvidia-container1 (>= {v})"],
    )
    base = PackageSpec(
        "nvidia-container-toolkit-base",
        v,
        "NVIDIA Container Toolkit Base (nvidia-ctk)",
        section="utils",
    )
    base.files += [
        _program(base.name, "usr/bin/nvidia-ctk", "nvidia_ctk.py", {"@VERSION@": v.split("-")[0]}),
        _program(base.name, "usr/bin/nvidia-cdi-hook", "nvidia_cdi_hook.py"),
        _simlib(base.name),
    ]
    toolkit = PackageSpec(
        "nvidia-container-toolkit",
        v,
        "NVIDIA Container toolkit",
        section="utils",
        depends=[
            f"nvidia-container-toolkit-base (= {v})",
            f"libnvidia-container-tools (>= {v})",
            "libnvidia-container-tools (<< 2.0.0)",
        ],
    )
    return [lib, tools, base, toolkit]


def _dcgm() -> list[PackageSpec]:
    cat = catalog()
    v4 = cat["dcgm4"]["version"]
    v3 = cat["dcgm3"]["version"]
    pkgs = []
    for name, version, summary in (
        ("datacenter-gpu-manager-4-core", v4, "NVIDIA Datacenter GPU Manager 4 (core)"),
        ("datacenter-gpu-manager", v3, "NVIDIA Datacenter GPU Manager 3 (old package name)"),
    ):
        upstream = version.split(":")[-1].split("-")[0]
        spec = PackageSpec(name, version, summary, section="multiverse/utils")
        spec.files += [
            _program(name, "usr/bin/dcgmi", "dcgmi.py", {"@VERSION@": upstream}),
            _program(name, "usr/bin/nv-hostengine", "nv_hostengine.py", {"@VERSION@": upstream}),
            _simlib(name),
            FileSpec("lib/systemd/system/nvidia-dcgm.service", "nvidia-dcgm.service"),
        ]
        pkgs.append(spec)
    core, old = pkgs
    core.conflicts = core.replaces = ["datacenter-gpu-manager"]
    old.conflicts = old.replaces = ["datacenter-gpu-manager-4-core"]
    for major in cat["dcgm4"]["cuda_majors"]:
        others = [
            f"datacenter-gpu-manager-4-cuda{m}" for m in cat["dcgm4"]["cuda_majors"] if m != major
        ]
        pkgs.append(
            PackageSpec(
                f"datacenter-gpu-manager-4-cuda{major}",
                v4,
                f"NVIDIA Datacenter GPU Manager 4 (CUDA {major} support)",
                section="multiverse/utils",
                depends=[f"datacenter-gpu-manager-4-core (= {v4})"],
                conflicts=others,
                replaces=others,
            )
        )
    return pkgs


def _cuda_toolkits() -> list[PackageSpec]:
    pkgs = []
    for tk in catalog()["cuda_toolkits"]:
        series = tk["series"]
        major = series.split(".")[0]
        name = f"cuda-toolkit-{series.replace('.', '-')}"
        subst = {
            "@SERIES@": series,
            "@NVCC@": tk["nvcc"],
            "@BUILD@": tk["build"],
            "@BUILT_ON@": tk["built_on"],
            "@YEAR@": tk["copyright_year"],
            "@VERSION@": tk["version"].split("-")[0],
        }
        spec = PackageSpec(
            name, tk["version"], f"CUDA Toolkit {series} meta-package", section="multiverse/devel"
        )
        prefix = f"usr/local/cuda-{series}"
        spec.files += [
            _program(name, f"{prefix}/bin/nvcc", "nvcc.py", subst),
            _simlib(name),
            FileSpec(
                f"{prefix}/lib64/libcudart.so.{major}", "libcudart.txt", subst=tuple(subst.items())
            ),
            FileSpec(f"{prefix}/version.json", "cuda-version.json", subst=tuple(subst.items())),
        ]
        spec.symlinks[f"{prefix}/lib64/libcudart.so"] = f"libcudart.so.{major}"
        spec.scripts = {"postinst": "cuda-postinst.sh", "prerm": "cuda-prerm.sh"}
        spec.script_subst = (
            ("@SERIES@", series),
            ("@MAJOR@", major),
            ("@PRIORITY@", series.replace(".", "")),
        )
        pkgs.append(spec)
    return pkgs


def _gpu_sim() -> PackageSpec:
    v = catalog()["gpu_sim"]["version"]
    name = "gpuprov-gpu-sim"
    spec = PackageSpec(
        name,
        v,
        "simulated NVIDIA GPUs for the gpuprov test bed (lspci, mokutil, module loader)",
        section="misc",
    )
    spec.files += [
        _program(name, "usr/local/sbin/lspci", "lspci_shim.py"),
        _program(name, "usr/local/sbin/mokutil", "mokutil_shim.py"),
        _program(name, SIM_LOAD.lstrip("/"), "sim_load.py"),
        _simlib(name),
        FileSpec("lib/systemd/system/gpuprov-sim-load.service", "gpuprov-sim-load.service"),
    ]
    spec.scripts["postinst"] = "enable-postinst.sh"
    spec.script_subst = (("@UNIT@", "gpuprov-sim-load.service"),)
    return spec


def all_specs(releases: tuple[str, ...] | None = None) -> list[PackageSpec]:
    """Every stand-in package, for the given driver releases (default: all in catalog.json)."""
    wanted = set(releases or driver_releases())
    unknown = wanted - set(driver_releases())
    if unknown:
        where = Location(str(resources.files(__package__).joinpath("catalog.json")))
        known = ", ".join(driver_releases())
        raise InputError(
            [
                Problem(
                    where,
                    f"no stand-in data for driver release {v} (known: {known}); add it to driver_releases",
                )
                for v in sorted(unknown)
            ]
        )
    specs: list[PackageSpec] = []
    for rel in catalog()["driver_releases"]:
        if rel["version"] in wanted:
            specs += _driver_packages(rel)
    specs += _container_toolkit() + _dcgm() + _cuda_toolkits() + [_gpu_sim()]
    for spec in specs:
        # The stand-in programs and the kernel postinst are Python: say so, rather than rely on
        # the test host having it (the real packages depend on libc6 and friends instead).
        runs_python = (
            any(f.source.endswith(".py") for f in spec.files)
            or "kernel-postinst.sh" in spec.scripts.values()
        )
        if runs_python and "python3" not in spec.depends:
            spec.depends.append("python3")
    return sorted(specs, key=lambda s: (s.name, s.version))
