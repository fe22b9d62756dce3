"""Named simulated GPU host profiles for the stand-in packages (/etc/gpuprov-sim/profile.json).

Values follow the real hardware: PCI ids and lspci names (pci.ids), memory as nvidia-smi reports
it, power limits, NVLink counts in `topo -m`. Faults make a host misbehave the way real ones do.
"""

from __future__ import annotations

import copy
from typing import Any, cast

from gpuprov.errors import InputError

PROFILES: dict[str, dict] = {
    "hgx-h100-8": {
        "gpu_model": "NVIDIA H100 80GB HBM3",
        "architecture": "Hopper",
        "pci_device": "10de:2330",
        "pci_subsystem": "10de:16c1",
        "pci_name": "GH100 [H100 SXM5 80GB]",
        "gpu_count": 8,
        "nvswitch_count": 4,
        "nvswitch_pci_device": "10de:22a3",
        "nvswitch_pci_name": "GH100 [H100 NVSwitch]",
        "memory_mib": 81559,
        "memory_reserved_mib": 551,
        "power_limit_w": 700,
        "compute_cap": "9.0",
        "nvlink": "NV18",
        "vbios": "96.00.74.00.01",
        "clocks": {"graphics": 1980, "memory": 2619, "video": 1545},
    },
    "hgx-a100-8": {
        "gpu_model": "NVIDIA A100-SXM4-80GB",
        "architecture": "Ampere",
        "pci_device": "10de:20b2",
        "pci_subsystem": "10de:147f",
        "pci_name": "GA100 [A100 SXM4 80GB]",
        "gpu_count": 8,
        "nvswitch_count": 6,
        "nvswitch_pci_device": "10de:1af1",
        "nvswitch_pci_name": "GA100 [A100 NVSwitch]",
        "memory_mib": 81920,
        "memory_reserved_mib": 869,
        "power_limit_w": 400,
        "compute_cap": "8.0",
        "nvlink": "NV12",
        "vbios": "92.00.36.00.02",
        "clocks": {"graphics": 1410, "memory": 1593, "video": 1290},
    },
    "h100-pcie": {
        "gpu_model": "NVIDIA H100 PCIe",
        "architecture": "Hopper",
        "pci_device": "10de:2331",
        "pci_subsystem": "10de:1626",
        "pci_name": "GH100 [H100 PCIe]",
        "gpu_count": 2,
        "nvswitch_count": 0,
        "bus_ids": ["41", "c1"],
        "memory_mib": 81559,
        "memory_reserved_mib": 551,
        "power_limit_w": 350,
        "compute_cap": "9.0",
        "vbios": "96.00.30.00.01",
        "clocks": {"graphics": 1755, "memory": 1593, "video": 1455},
    },
    "hgx-b200-8": {
        "gpu_model": "NVIDIA B200",
        "architecture": "Blackwell",
        "pci_device": "10de:2901",
        "pci_subsystem": "10de:1999",
        "pci_name": "GB100 [B200]",
        "gpu_count": 8,
        "nvswitch_count": 2,
        "nvswitch_pci_device": "10de:22a8",
        "nvswitch_pci_name": "GB100 [B200 NVSwitch]",
        "memory_mib": 183359,
        "memory_reserved_mib": 1043,
        "power_limit_w": 1000,
        "compute_cap": "10.0",
        "nvlink": "NV18",
        "vbios": "97.00.4A.00.01",
        "open_modules_required": True,
        "clocks": {"graphics": 1965, "memory": 3996, "video": 1770},
    },
}

FAULTS = {"missing_gpus", "ecc_uncorrectable", "retired_pages_pending", "fabric_in_progress"}


def render_profile(name: str, *, secure_boot: bool = False, **faults: object) -> dict:
    """The profile.json content for a named profile, with optional faults:
    missing_gpus=N, ecc_uncorrectable={gpu_index: count}, retired_pages_pending=True,
    fabric_in_progress=True (fabric never completes, as when NVLSM/FM is broken)."""
    if name not in PROFILES:
        raise InputError(f"unknown GPU sim profile {name!r}; known: {', '.join(sorted(PROFILES))}")
    unknown = set(faults) - FAULTS
    if unknown:
        raise InputError(f"unknown fault(s) {sorted(unknown)}; known: {', '.join(sorted(FAULTS))}")
    prof = {"profile": name, **copy.deepcopy(PROFILES[name]), "secure_boot": secure_boot}
    if "ecc_uncorrectable" in faults:
        faults["ecc_uncorrectable"] = {
            str(k): int(v) for k, v in cast("dict[Any, Any]", faults["ecc_uncorrectable"]).items()
        }
    prof["faults"] = {k: v for k, v in sorted(faults.items()) if v}
    return prof
