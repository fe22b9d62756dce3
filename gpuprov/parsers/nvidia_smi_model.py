"""The typed model both `nvidia-smi -q -x` (XML) and `nvidia-smi -q` (text) parse into."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuprov.parsers import ParseError, is_na


@dataclass(frozen=True)
class EccErrors:
    """Uncorrectable ECC error totals. None = not reported (ECC off, N/A, virtualised)."""

    volatile_dram_uncorrectable: int | None = None
    volatile_sram_uncorrectable: int | None = None
    aggregate_dram_uncorrectable: int | None = None
    aggregate_sram_uncorrectable: int | None = None

    @property
    def volatile_uncorrectable(self) -> int | None:
        return _sum(self.volatile_dram_uncorrectable, self.volatile_sram_uncorrectable)

    @property
    def aggregate_uncorrectable(self) -> int | None:
        return _sum(self.aggregate_dram_uncorrectable, self.aggregate_sram_uncorrectable)


@dataclass(frozen=True)
class RetiredPages:
    """Page retirement (pre-Ampere); Ampere and later report remapped rows instead."""

    single_bit_count: int | None = None
    double_bit_count: int | None = None
    pending: bool | None = None


@dataclass(frozen=True)
class RemappedRows:
    """Row remapping (Ampere and later). `pending` means a GPU reset is needed."""

    correctable: int | None = None
    uncorrectable: int | None = None
    pending: bool | None = None
    failure: bool | None = None


@dataclass(frozen=True)
class Fabric:
    """NVLink fabric registration; "Completed"/"Success" once fabric manager has run."""

    state: str | None = None  # "Completed" | "In Progress" | "Not Started" | None (N/A)
    status: str | None = None  # "Success" | error text | None


@dataclass(frozen=True)
class Gpu:
    index: int  # enumeration order, as `nvidia-smi -i N` counts
    pci_bus_id: str  # "00000000:19:00.0"
    product_name: str
    uuid: str
    serial: str | None = None
    pci_device_id: str | None = None  # "10de:2330" (vendor:device, lower case)
    persistence_mode: bool | None = None
    mig_mode: bool | None = None  # current MIG mode
    mig_devices: int = 0
    memory_total_mib: int | None = None
    ecc: EccErrors = field(default_factory=EccErrors)
    retired_pages: RetiredPages = field(default_factory=RetiredPages)
    remapped_rows: RemappedRows = field(default_factory=RemappedRows)
    fabric: Fabric | None = None  # None when the tool does not print a Fabric section


@dataclass(frozen=True)
class NvidiaSmiReport:
    driver_version: str
    cuda_version: str | None
    gpus: tuple[Gpu, ...]
    # What the header says; more than len(gpus) when run with `-i N` (one GPU of several).
    attached_gpus: int | None = None


def _sum(*values: int | None) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def to_int(source: str, name: str, value: str | None) -> int | None:
    """An integer counter or size ("0", "81920 MiB"); None for N/A; ParseError otherwise."""
    if is_na(value):
        return None
    assert value is not None
    token = value.strip().split()[0]
    try:
        return int(token, 0)
    except ValueError:
        raise ParseError(source, f"{name}: expected a number, got {value!r}") from None


def to_bool(source: str, name: str, value: str | None) -> bool | None:
    """Enabled/Disabled, Yes/No, Active/Not Active; None for N/A; ParseError otherwise."""
    if is_na(value):
        return None
    assert value is not None
    v = value.strip().lower()
    if v in ("enabled", "yes", "active", "true"):
        return True
    if v in ("disabled", "no", "not active", "false"):
        return False
    raise ParseError(source, f"{name}: expected Enabled/Disabled or Yes/No, got {value!r}")


def pci_id_from_nvsmi(value: str | None) -> str | None:
    """nvidia-smi prints the PCI id as device<<16|vendor: "0x233010DE" -> "10de:2330"."""
    if is_na(value):
        return None
    assert value is not None
    v = value.strip().lower().removeprefix("0x")
    if len(v) != 8 or any(c not in "0123456789abcdef" for c in v):
        return None
    return f"{v[4:]}:{v[:4]}"


def na_str(value: str | None) -> str | None:
    return None if is_na(value) else value.strip()  # type: ignore[union-attr]
