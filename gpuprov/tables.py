"""Data tables (GPU system profiles, CUDA -> minimum driver, package names per OS and
driver branch) read from YAML files in gpuprov/data/. Adding a GPU or an OS is a data
change; this module only loads, validates and looks up. See docs/data-tables.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OpenModules = Literal["required", "recommended", "unsupported"]


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
