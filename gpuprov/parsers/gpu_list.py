"""`nvidia-smi -L` -> the GPUs it lists (index, product name, UUID).

One line per GPU, `GPU <i>: <name> (UUID: GPU-<uuid>)`, with MIG devices indented under
their GPU. Run inside a container, the runtime's own messages (an image pull's progress)
come in the same output: lines that do not start with "GPU " are not the tool's and are
skipped; a "GPU " line of another shape is format drift and raises ParseError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpuprov.parsers import ParseError

SOURCE = "nvidia-smi -L"
_GPU = re.compile(r"GPU (\d{1,3}): (\S.{0,126}?) \(UUID: (GPU-[0-9a-fA-F-]{8,64})\)")
_MIG = re.compile(r"\s+MIG \S+\s+Device\s+\d+: \(UUID: MIG-[0-9a-fA-F-]{8,64}\)")


@dataclass(frozen=True)
class ListedGpu:
    index: int
    name: str  # "NVIDIA H100 80GB HBM3"
    uuid: str


def parse_gpu_list(text: str) -> list[ListedGpu]:
    gpus: list[ListedGpu] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if line.startswith("GPU "):
            m = _GPU.fullmatch(line)
            if m is None:
                raise ParseError(SOURCE, f"not a GPU line: {line[:120]!r}", lineno)
            gpus.append(ListedGpu(int(m.group(1)), m.group(2), m.group(3)))
        elif _MIG.fullmatch(line) and not gpus:
            raise ParseError(SOURCE, "a MIG device before any GPU", lineno)
    indexes = [g.index for g in gpus]
    if indexes != list(range(len(gpus))):
        raise ParseError(SOURCE, f"GPU indexes {indexes} are not 0..{len(gpus) - 1}")
    return gpus
