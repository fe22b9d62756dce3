"""TEST SUPPORT: `nvidia-smi -q` (text) -> NvidiaSmiReport, and the Fabric blocks of a grep.

gpuprov reads `nvidia-smi -q -x` on hosts (gpuprov/parsers/nvidia_smi_xml.py); the public
full captures of H100/H800 nodes exist only as text, so the verdict tests read them through
this parser to judge real 8-GPU data.

The text format is an indented tree of "Key : value" lines under one "GPU <bus id>" header
per GPU. We build that tree generically, then read the same fields as the XML parser.
Keys and layout vary by driver (e.g. "SRAM Uncorrectable" vs the R550+ "SRAM
Uncorrectable Parity"/"SEC-DED" split); missing sections read as None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuprov.parsers import ParseError
from gpuprov.parsers.nvidia_smi_model import (
    EccErrors,
    Fabric,
    Gpu,
    NvidiaSmiReport,
    RemappedRows,
    RetiredPages,
    na_str,
    pci_id_from_nvsmi,
    to_bool,
    to_int,
)

SOURCE = "nvidia-smi -q"
_KV = re.compile(r"^(?P<key>[^:]+?)\s*:(?: (?P<value>.*))?$")
_GPU_HEADER = re.compile(r"^GPU (?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])$")

__all__ = ["Node", "parse_fabric_blocks", "parse_nvidia_smi_text", "parse_tree"]


@dataclass
class Node:
    key: str
    value: str | None = None
    line: int = 0
    children: list[Node] = field(default_factory=list)

    def get(self, *path: str) -> Node | None:
        node: Node | None = self
        for key in path:
            assert node is not None
            node = next((c for c in node.children if c.key == key), None)
            if node is None:
                return None
        return node

    def value_of(self, *path: str) -> str | None:
        node = self.get(*path)
        return None if node is None else node.value

    def all(self, key: str) -> list[Node]:
        return [c for c in self.children if c.key == key]


def parse_tree(text: str) -> Node:
    """Indented "Key : value" lines -> a tree (duplicate keys kept in order)."""
    root = Node("<root>")
    stack: list[tuple[int, Node]] = [(-1, root)]
    for lineno, raw in enumerate(text.expandtabs(8).splitlines(), 1):
        if not raw.strip() or raw.strip().startswith("====="):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        m = _KV.match(line)
        node = Node(m["key"], m["value"], lineno) if m else Node(line, None, lineno)
        if node.value is not None:
            node.value = node.value.strip()
        while stack[-1][0] >= indent:
            stack.pop()
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    return root


def parse_nvidia_smi_text(text: str) -> NvidiaSmiReport:
    root = parse_tree(text)
    driver = root.value_of("Driver Version")
    if not driver:
        raise ParseError(SOURCE, "no 'Driver Version' line (is this `nvidia-smi -q` output?)")
    gpu_nodes = [c for c in root.children if _GPU_HEADER.match(c.key)]
    attached = to_int(SOURCE, "Attached GPUs", root.value_of("Attached GPUs"))
    # `nvidia-smi -q -i N` prints one GPU under "Attached GPUs : 8": fewer is allowed, more is not.
    if attached is None or len(gpu_nodes) > attached:
        raise ParseError(
            SOURCE, f"'Attached GPUs' is {attached} but {len(gpu_nodes)} GPU sections follow"
        )
    if attached and not gpu_nodes:
        raise ParseError(SOURCE, f"'Attached GPUs' is {attached} but no 'GPU <bus id>' section")
    gpus = tuple(_gpu(i, n) for i, n in enumerate(gpu_nodes))
    return NvidiaSmiReport(
        driver_version=driver,
        cuda_version=na_str(root.value_of("CUDA Version")),
        gpus=gpus,
        attached_gpus=attached,
    )


def parse_fabric_blocks(text: str) -> list[Fabric]:
    """Every "Fabric" block (State/Status) in `nvidia-smi -q` text or a grep -A2 of it."""
    found: list[Fabric] = []

    def walk(node: Node) -> None:
        for c in node.children:
            if c.key == "Fabric" and c.value is None:
                found.append(Fabric(na_str(c.value_of("State")), na_str(c.value_of("Status"))))
            else:
                walk(c)

    walk(parse_tree(text))
    return found


def _gpu(index: int, n: Node) -> Gpu:
    m = _GPU_HEADER.match(n.key)
    assert m is not None
    bus = m["bus"]
    where = f"GPU {index} ({bus})"
    name = n.value_of("Product Name")
    uuid = n.value_of("GPU UUID")
    if not name or not uuid:
        raise ParseError(SOURCE, f"{where}: missing 'Product Name' or 'GPU UUID'", n.line)
    fabric = n.get("Fabric")
    return Gpu(
        index=index,
        pci_bus_id=n.value_of("PCI", "Bus Id") or bus,
        product_name=name,
        uuid=uuid,
        serial=na_str(n.value_of("Serial Number")),
        pci_device_id=pci_id_from_nvsmi(n.value_of("PCI", "Device Id")),
        persistence_mode=to_bool(
            SOURCE, f"{where} Persistence Mode", n.value_of("Persistence Mode")
        ),
        mig_mode=to_bool(SOURCE, f"{where} MIG Mode", n.value_of("MIG Mode", "Current")),
        mig_devices=len(n.all("MIG Device")),
        memory_total_mib=to_int(
            SOURCE, f"{where} FB Memory", n.value_of("FB Memory Usage", "Total")
        ),
        ecc=_ecc(where, n.get("ECC Errors")),
        retired_pages=_retired(where, n.get("Retired Pages")),
        remapped_rows=_remapped(where, n.get("Remapped Rows")),
        fabric=None
        if fabric is None
        else Fabric(na_str(fabric.value_of("State")), na_str(fabric.value_of("Status"))),
    )


def _ecc(where: str, n: Node | None) -> EccErrors:
    if n is None:
        return EccErrors()
    out: dict[str, int | None] = {}
    for scope in ("Volatile", "Aggregate"):
        s = n.get(scope)
        label = f"{where} ECC Errors {scope}"
        if s is None:
            out[f"{scope}_dram"] = out[f"{scope}_sram"] = None
            continue
        if s.get("Double Bit") is not None:  # pre-R470 layout
            dram = to_int(SOURCE, label, s.value_of("Double Bit", "Device Memory"))
            total = to_int(SOURCE, label, s.value_of("Double Bit", "Total"))
            out[f"{scope}_dram"], out[f"{scope}_sram"] = (
                dram,
                (None if total is None else total - (dram or 0)),
            )
            continue
        dram = to_int(SOURCE, label, s.value_of("DRAM Uncorrectable"))
        if s.get("SRAM Uncorrectable Parity") is not None:
            parity = to_int(SOURCE, label, s.value_of("SRAM Uncorrectable Parity"))
            secded = to_int(SOURCE, label, s.value_of("SRAM Uncorrectable SEC-DED"))
            sram = None if parity is None and secded is None else (parity or 0) + (secded or 0)
        else:
            sram = to_int(SOURCE, label, s.value_of("SRAM Uncorrectable"))
        out[f"{scope}_dram"], out[f"{scope}_sram"] = dram, sram
    return EccErrors(
        out["Volatile_dram"], out["Volatile_sram"], out["Aggregate_dram"], out["Aggregate_sram"]
    )


def _retired(where: str, n: Node | None) -> RetiredPages:
    if n is None:
        return RetiredPages()
    label = f"{where} Retired Pages"
    pending_values = [
        to_bool(SOURCE, label, n.value_of(k))
        for k in ("Pending Page Blacklist", "Pending Page Retirement", "Pending")
    ]
    known = [p for p in pending_values if p is not None]

    def count(key: str) -> int | None:
        node = n.get(key)
        if node is None:
            return None
        # Older drivers nest "Retired Pages/Single Bit ECC/Count"; newer print the value inline.
        return to_int(
            SOURCE, label, node.value if node.value is not None else node.value_of("Count")
        )

    return RetiredPages(
        single_bit_count=count("Single Bit ECC"),
        double_bit_count=count("Double Bit ECC"),
        pending=any(known) if known else None,
    )


def _remapped(where: str, n: Node | None) -> RemappedRows:
    if n is None or n.value is not None:  # "Remapped Rows : N/A"
        return RemappedRows()
    label = f"{where} Remapped Rows"
    return RemappedRows(
        correctable=to_int(SOURCE, label, n.value_of("Correctable Error")),
        uncorrectable=to_int(SOURCE, label, n.value_of("Uncorrectable Error")),
        pending=to_bool(SOURCE, label, n.value_of("Pending")),
        failure=to_bool(SOURCE, label, n.value_of("Remapping Failure Occurred")),
    )
