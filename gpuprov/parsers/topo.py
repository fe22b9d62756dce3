"""`nvidia-smi topo -m` -> connection matrix, plus NVLink all-to-all detection.

Cells are "X" (self), "NV<n>" (n bonded NVLinks), or a PCIe path (PIX/PXB/PHB/NODE/SYS).
The header is tab separated and may carry terminal underline escapes (ESC[4m ... ESC[0m).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpuprov.parsers import ParseError

SOURCE = "nvidia-smi topo -m"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_DEVICE = re.compile(r"^(GPU|NIC|NVS)\d+$")
_NV = re.compile(r"^NV(\d+)$")


@dataclass(frozen=True)
class Topology:
    devices: tuple[str, ...]  # "GPU0", ..., "NIC0", ...
    matrix: dict[str, dict[str, str]]  # matrix["GPU0"]["GPU1"] == "NV12"
    cpu_affinity: dict[str, str]
    numa_affinity: dict[str, str]

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(d for d in self.devices if d.startswith("GPU"))

    def nvlinks(self, a: str, b: str) -> int:
        m = _NV.match(self.matrix[a][b])
        return int(m.group(1)) if m else 0

    def nvlink_all_to_all(self) -> bool:
        """True when every pair of (at least two) GPUs is joined by NVLink."""
        g = self.gpus
        return len(g) >= 2 and all(self.nvlinks(a, b) > 0 for a in g for b in g if a != b)

    def min_gpu_nvlinks(self) -> int:
        g = self.gpus
        pairs = [self.nvlinks(a, b) for a in g for b in g if a != b]
        return min(pairs) if pairs else 0


def parse_topo_matrix(text: str) -> Topology:
    lines = [_ANSI.sub("", line).rstrip("\n") for line in text.splitlines()]
    header_i = next((i for i, line in enumerate(lines) if line.strip().startswith("GPU0")), None)
    if header_i is None:
        raise ParseError(SOURCE, "no header line starting with GPU0")
    header = [h.strip() for h in lines[header_i].strip().split("\t")]
    devices = tuple(h for h in header if _DEVICE.match(h))
    if not devices or header[: len(devices)] != list(devices):
        raise ParseError(SOURCE, f"unexpected header {header!r}", header_i + 1)
    matrix: dict[str, dict[str, str]] = {}
    cpu: dict[str, str] = {}
    numa: dict[str, str] = {}
    for lineno, line in enumerate(lines[header_i + 1 :], header_i + 2):
        if not line.strip():
            break
        cells = line.split("\t")
        name = cells[0].strip()
        if name not in devices:
            raise ParseError(SOURCE, f"row {name!r} is not a device of the header", lineno)
        values = [c.strip() for c in cells[1:]]
        if len(values) < len(devices):
            raise ParseError(
                SOURCE, f"row {name} has {len(values)} cells, expected {len(devices)}", lineno
            )
        matrix[name] = dict(zip(devices, values[: len(devices)], strict=True))
        extra = dict(zip(header[len(devices) :], values[len(devices) :], strict=False))
        cpu[name] = extra.get("CPU Affinity", "")
        numa[name] = extra.get("NUMA Affinity", "")
        if matrix[name][name] != "X":
            raise ParseError(
                SOURCE, f"row {name}: diagonal is {matrix[name][name]!r}, expected X", lineno
            )
    missing = [d for d in devices if d not in matrix]
    if missing:
        raise ParseError(SOURCE, f"no rows for {', '.join(missing)}")
    return Topology(devices, matrix, cpu, numa)
