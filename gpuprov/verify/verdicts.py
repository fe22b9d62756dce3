"""Host verdicts for `gpuprov verify` and the rollout health gates.

`verdict()` compares what a host reports (a `HostStateData` from the HostState fact, or a
bare `NvidiaSmiReport`) with its system profile and the pinned driver, and returns one
`Check` per question an operator asks after an install: does nvidia-smi run, are all GPUs
there and the right model, is the pinned driver loaded, are there uncorrectable ECC errors
or pending row remaps, is the NVLink fabric up (NVSwitch systems), did DCGM pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuprov.facts.host_state import HostStateData, NvidiaSmiState
from gpuprov.parsers.dcgmi_diag import DcgmDiag
from gpuprov.parsers.nvidia_smi_model import NvidiaSmiReport
from gpuprov.parsers.topo import Topology
from gpuprov.tables import SystemProfile


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class HostVerdict:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        if self.ok:
            return f"healthy ({len(self.checks)} checks passed)"
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failed)


def verdict(
    state: HostStateData | NvidiaSmiState | NvidiaSmiReport,
    profile: SystemProfile,
    expected_driver: str,
    dcgm: DcgmDiag | None = None,
) -> HostVerdict:
    smi, module = _normalise(state)
    v = HostVerdict()
    v.checks.append(_smi_check(smi, module))
    report = smi.report
    if report is not None:
        v.checks += [
            _count(report, profile),
            _model(report, profile),
            _driver(report, expected_driver, module),
            _ecc(report),
            _retired(report),
        ]
        if profile.nvswitch:
            v.checks.append(_fabric(report, state))
    if dcgm is not None:
        v.checks.append(_dcgm(dcgm))
    return v


def _normalise(state) -> tuple[NvidiaSmiState, str | None]:
    if isinstance(state, HostStateData):
        return state.nvidia_smi, state.nvidia_module_version
    if isinstance(state, NvidiaSmiReport):
        return NvidiaSmiState(present=True, rc=0, report=state), None
    return state, None


def _smi_check(smi: NvidiaSmiState, module: str | None) -> Check:
    if not smi.present:
        return Check("nvidia-smi", False, "nvidia-smi is not installed (driver missing?)")
    if smi.version_mismatch:
        loaded = f" (loaded kernel module {module})" if module else ""
        return Check(
            "nvidia-smi",
            False,
            f"Driver/library version mismatch{loaded}: the new driver is installed but the old "
            "kernel module is still loaded; reboot the host",
        )
    if smi.report is None:
        first = (smi.error or "no output").strip().splitlines()[0]
        return Check("nvidia-smi", False, f"nvidia-smi failed (exit {smi.rc}): {first}")
    return Check("nvidia-smi", True, f"runs, driver {smi.report.driver_version}")


def _count(r: NvidiaSmiReport, p: SystemProfile) -> Check:
    seen = len(r.gpus)
    if r.attached_gpus is not None and r.attached_gpus != seen:
        return Check(
            "gpu-count", False, f"report lists {seen} of {r.attached_gpus} attached GPUs (-i used?)"
        )
    ok = seen == p.gpu_count
    return Check("gpu-count", ok, f"{seen} GPUs, profile {p.name} expects {p.gpu_count}")


def _model(r: NvidiaSmiReport, p: SystemProfile) -> Check:
    wrong = [g for g in r.gpus if g.product_name != p.gpu_model]
    if not wrong:
        return Check("gpu-model", True, f"all {p.gpu_model}")
    names = ", ".join(f"GPU {g.index} is {g.product_name!r}" for g in wrong[:4])
    return Check("gpu-model", False, f"{names}; profile {p.name} expects {p.gpu_model!r}")


def _driver(r: NvidiaSmiReport, expected: str, module: str | None) -> Check:
    if r.driver_version != expected:
        return Check("driver-version", False, f"driver {r.driver_version}, pinned {expected}")
    if module and module != expected:
        return Check("driver-version", False, f"kernel module {module} loaded, pinned {expected}")
    return Check("driver-version", True, f"driver {expected}")


def _ecc(r: NvidiaSmiReport) -> Check:
    bad = [
        f"GPU {g.index} ({g.pci_bus_id}): {g.ecc.volatile_uncorrectable}"
        for g in r.gpus
        if g.ecc.volatile_uncorrectable
    ]
    if bad:
        return Check("ecc", False, "volatile uncorrectable ECC errors: " + ", ".join(bad))
    unknown = sum(1 for g in r.gpus if g.ecc.volatile_uncorrectable is None)
    note = f" ({unknown} GPU(s) do not report volatile ECC)" if unknown else ""
    return Check("ecc", True, "no volatile uncorrectable ECC errors" + note)


def _retired(r: NvidiaSmiReport) -> Check:
    bad = []
    for g in r.gpus:
        where = f"GPU {g.index} ({g.pci_bus_id})"
        if g.retired_pages.pending:
            bad.append(f"{where}: page retirement pending (reset the GPU)")
        if g.remapped_rows.pending:
            bad.append(f"{where}: row remapping pending (reset the GPU)")
        if g.remapped_rows.failure:
            bad.append(f"{where}: row remapping failure (replace the GPU)")
    if bad:
        return Check("memory-remap", False, "; ".join(bad))
    return Check("memory-remap", True, "no pending retired pages or remapped rows")


def _fabric(r: NvidiaSmiReport, state) -> Check:
    bad = []
    for g in r.gpus:
        f = g.fabric
        if f is None or f.state is None:
            bad.append(f"GPU {g.index}: no fabric state reported")
        elif f.state != "Completed" or (f.status not in (None, "Success")):
            bad.append(f"GPU {g.index}: fabric {f.state}/{f.status or 'N/A'}")
    if not bad:
        return Check("fabric", True, "NVLink fabric Completed/Success on every GPU")
    hint = "nvidia-fabricmanager is not running or not finished"
    if isinstance(state, HostStateData):
        svc = state.services.get("nvidia-fabricmanager")
        if svc is not None:
            hint = f"nvidia-fabricmanager is {svc.active or 'not installed'}"
    detail = "; ".join(bad[:4]) + (f" (+{len(bad) - 4} more)" if len(bad) > 4 else "")
    return Check("fabric", False, f"{detail}: {hint} (its version must equal the driver's)")


def _dcgm(d: DcgmDiag) -> Check:
    if d.passed:
        return Check("dcgm-diag", True, f"{len(d.tests)} tests passed or skipped")
    failed = ", ".join(
        f"{t.name}" + (f" ({t.details.splitlines()[0][:100]})" if t.details else "")
        for t in d.failed
    )
    return Check("dcgm-diag", False, f"failed: {failed}")


def pci_checks(state: HostStateData, profile: SystemProfile) -> list[Check]:
    """Preflight from `lspci -nn` (before any driver): the profile's GPUs and NVSwitches are
    on the bus. Empty when lspci is not installed on the host."""
    if state.pci_devices is None:
        return []
    gpus = [d for d in state.pci_gpus if d.pci_id in profile.gpu_pci_ids]
    checks = [
        Check(
            "pci-gpus",
            len(gpus) == profile.gpu_count,
            f"{len(gpus)} GPUs with ids {', '.join(profile.gpu_pci_ids)} on the PCI bus, "
            f"profile {profile.name} expects {profile.gpu_count}",
        )
    ]
    if profile.nvswitch and profile.nvswitch_count:
        sw = [d for d in state.pci_nvswitches if d.pci_id in profile.nvswitch_pci_ids]
        checks.append(
            Check(
                "pci-nvswitches",
                len(sw) == profile.nvswitch_count,
                f"{len(sw)} NVSwitches on the PCI bus, expected {profile.nvswitch_count}",
            )
        )
    return checks


def nvlink_topology(topo: Topology, profile: SystemProfile) -> Check:
    """On an NVSwitch system every pair of GPUs talks over NVLink, all with the same number
    of links: a pair on PCIe (SYS/PHB...) or with fewer links is a degraded fabric that
    nvidia-smi's other output does not show."""
    gpus = topo.gpus
    counts = {(a, b): topo.nvlinks(a, b) for a in gpus for b in gpus if a < b}
    if len(gpus) != profile.gpu_count:
        return Check("nvlink-topology", False, f"topo -m shows {len(gpus)} GPUs, expected "
                     f"{profile.gpu_count}")  # fmt: skip
    most = max(counts.values(), default=0)
    weak = [f"{a}-{b} {topo.matrix[a][b]}" for (a, b), n in counts.items() if n == 0 or n < most]
    if most == 0 or weak:
        shown = ", ".join(weak[:6]) + (f" (+{len(weak) - 6} more)" if len(weak) > 6 else "")
        return Check("nvlink-topology", False, f"GPU pairs not on full NVLink: {shown or 'all'}")
    return Check("nvlink-topology", True, f"NVLink all-to-all between {len(gpus)} GPUs (NV{most})")
