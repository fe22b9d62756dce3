"""`lspci -nn` and `lspci -nnmm` -> PCI devices; helpers to pick NVIDIA GPUs and NVSwitches.

18:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev a1)
18:00.0 "3D controller [0302]" "NVIDIA Corporation [10de]" "GH100 [H100 SXM5 80GB] [2330]" -ra1 ...
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from gpuprov.parsers import ParseError

SOURCE = "lspci -nn"
NVIDIA_VENDOR = "10de"
_SLOT = r"(?P<slot>(?:[0-9a-f]{4}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])"
_NN = re.compile(
    _SLOT + r" (?P<cls>.+?) \[(?P<class_id>[0-9a-f]{4})\]: (?P<name>.*?) "
    r"\[(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})\]"
    r"(?: \(rev (?P<rev>[0-9a-f]{2})\))?(?: \(prog-if .*\))?$"
)
_BRACKET_ID = re.compile(r"^(?P<text>.*?) ?\[(?P<id>[0-9a-f]{4})\]$")
# PCI class codes: 0300 VGA, 0302 3D controller (datacenter GPUs), 0680 "Bridge" (NVSwitch).
GPU_CLASSES = frozenset({"0300", "0302"})
BRIDGE_OTHER = "0680"


@dataclass(frozen=True)
class PciDevice:
    slot: str
    cls: str  # "3D controller"
    class_id: str  # "0302"
    vendor_id: str  # "10de"
    device_id: str  # "2330"
    name: str  # "NVIDIA Corporation GH100 [H100 SXM5 80GB]"
    rev: str | None = None

    @property
    def pci_id(self) -> str:
        return f"{self.vendor_id}:{self.device_id}"


def parse_lspci(text: str) -> list[PciDevice]:
    devices = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        dev = (
            _parse_mm(line, lineno)
            if '"' in line.split(" ", 1)[-1][:1]
            else _parse_nn(line, lineno)
        )
        devices.append(dev)
    return devices


def _parse_nn(line: str, lineno: int) -> PciDevice:
    m = _NN.match(line)
    if not m:
        raise ParseError(SOURCE, f"not an `lspci -nn` line: {line[:100]!r}", lineno)
    return PciDevice(
        m["slot"], m["cls"], m["class_id"], m["vendor"], m["device"], m["name"], m["rev"]
    )


def _parse_mm(line: str, lineno: int) -> PciDevice:
    try:
        parts = shlex.split(line)
    except ValueError as exc:
        raise ParseError("lspci -nnmm", f"{exc}: {line[:100]!r}", lineno) from None
    if len(parts) < 4 or not re.fullmatch(_SLOT, parts[0]):
        raise ParseError("lspci -nnmm", f"not an `lspci -nnmm` line: {line[:100]!r}", lineno)
    fields = []
    for p in parts[1:4]:
        m = _BRACKET_ID.match(p)
        if not m:
            raise ParseError("lspci -nnmm", f"field {p!r} has no [id]", lineno)
        fields.append((m["text"], m["id"]))
    rev = next((p[2:] for p in parts[4:] if p.startswith("-r")), None)
    (cls, class_id), (vendor, vendor_id), (device, device_id) = fields
    return PciDevice(parts[0], cls, class_id, vendor_id, device_id, f"{vendor} {device}", rev)


def nvidia_gpus(devices: list[PciDevice]) -> list[PciDevice]:
    return [d for d in devices if d.vendor_id == NVIDIA_VENDOR and d.class_id in GPU_CLASSES]


def nvswitches(devices: list[PciDevice]) -> list[PciDevice]:
    """NVSwitch chips enumerate as NVIDIA "Bridge [0680]" devices."""
    return [d for d in devices if d.vendor_id == NVIDIA_VENDOR and d.class_id == BRIDGE_OTHER]
