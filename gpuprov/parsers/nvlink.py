"""`nvidia-smi nvlink --status` (`nvlink -s`) -> per-GPU link speeds.

GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-...)
         Link 0: 25 GB/s
         Link 1: <inactive>
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpuprov.parsers import ParseError

SOURCE = "nvidia-smi nvlink --status"
_GPU = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>[^)]+)\)$")
_LINK = re.compile(r"^Link (?P<link>\d+): (?P<value>.+)$")
_SPEED = re.compile(r"^(?P<speed>\d+(?:\.\d+)?) GB/s$")


@dataclass(frozen=True)
class NvlinkGpu:
    index: int
    name: str
    uuid: str
    links: dict[int, float | None]  # link -> GB/s; None when inactive/unknown

    @property
    def active_links(self) -> int:
        return sum(1 for v in self.links.values() if v)


def parse_nvlink_status(text: str) -> list[NvlinkGpu]:
    gpus: list[NvlinkGpu] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if m := _GPU.match(line):
            gpus.append(NvlinkGpu(int(m["index"]), m["name"], m["uuid"], {}))
        elif m := _LINK.match(line):
            if not gpus:
                raise ParseError(SOURCE, "link line before any GPU line", lineno)
            s = _SPEED.match(m["value"].strip())
            gpus[-1].links[int(m["link"])] = float(s["speed"]) if s else None
        else:
            raise ParseError(SOURCE, f"unexpected line {line[:80]!r}", lineno)
    if not gpus:
        raise ParseError(SOURCE, "no 'GPU N: ...' lines")
    return gpus
