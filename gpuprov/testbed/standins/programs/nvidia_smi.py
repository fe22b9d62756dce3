#!/usr/bin/python3
"""nvidia-smi stand-in (gpuprov TEST STAND-IN, not NVIDIA software).

Prints real-format output for the simulated GPU profile; fails like the real one when no
module is loaded (exit 9) or the loaded module is another version (exit 18).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "@LIBREL@"))
import simlib  # noqa: E402

VERSION = "@VERSION@"
CUDA_VERSION = "@CUDA_VERSION@"

NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)
INVALID_ARGS = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"


def _persistence() -> str:
    return (
        "Enabled"
        if simlib.pid_alive(simlib.ROOT / "run/nvidia-persistenced/nvidia-persistenced.pid")
        else "Disabled"
    )


def gpu_tree(prof: dict, gpu: simlib.Gpu) -> list:
    """One GPU as (xml_tag, text_label, value-or-children); a None tag/label is omitted there."""
    mem = int(prof.get("memory_mib", 81559))
    reserved = int(prof.get("memory_reserved_mib", 551))
    state, status = simlib.fabric(prof)
    ecc = gpu.ecc_uncorrectable
    pmax = f"{float(prof.get('power_limit_w', 700)):.2f} W"
    pdev = prof.get("pci_device", "10de:2330").split(":")
    sub = prof.get("pci_subsystem", "10de:16c1").split(":")
    clocks = prof.get("clocks", {"graphics": 1980, "memory": 2619, "video": 1545})
    arch = prof.get("architecture", "Hopper")

    def ecc_block(kind: str) -> list:
        rows = [
            ("sram_correctable", "SRAM Correctable", "0"),
            ("sram_uncorrectable", None, "0"),
            (None, "SRAM Uncorrectable Parity", "0"),
            (None, "SRAM Uncorrectable SEC-DED", "0"),
            ("dram_correctable", "DRAM Correctable", "0"),
            ("dram_uncorrectable", "DRAM Uncorrectable", str(ecc)),
        ]
        if kind == "aggregate":
            rows.append((None, "SRAM Threshold Exceeded", "No"))
        return rows

    return [
        ("product_name", "Product Name", gpu.name),
        ("product_brand", "Product Brand", "NVIDIA"),
        ("product_architecture", "Product Architecture", arch),
        ("display_mode", "Display Mode", "Disabled"),
        ("display_active", "Display Active", "Disabled"),
        ("persistence_mode", "Persistence Mode", _persistence()),
        ("addressing_mode", "Addressing Mode", "None"),
        (
            "mig_mode",
            "MIG Mode",
            [("current_mig", "Current", "Disabled"), ("pending_mig", "Pending", "Disabled")],
        ),
        ("mig_devices", None, "None"),
        ("accounting_mode", "Accounting Mode", "Disabled"),
        ("accounting_mode_buffer_size", "Accounting Mode Buffer Size", "4000"),
        (
            "driver_model",
            "Driver Model",
            [("current_dm", "Current", "N/A"), ("pending_dm", "Pending", "N/A")],
        ),
        ("serial", "Serial Number", gpu.serial),
        ("uuid", "GPU UUID", gpu.uuid),
        ("minor_number", "Minor Number", str(gpu.index)),
        ("vbios_version", "VBIOS Version", prof.get("vbios", "96.00.74.00.01")),
        ("multigpu_board", "MultiGPU Board", "No"),
        ("board_id", "Board ID", f"0x{int(gpu.bus, 16) << 8:x}"),
        ("gpu_module_id", "Module ID", str(gpu.module_id)),
        ("gsp_firmware_version", "GSP Firmware Version", VERSION),
        (
            "gpu_reset_status",
            "GPU Reset Status",
            [
                ("reset_required", "Reset Required", "No"),
                ("drain_and_reset_recommended", "Drain and Reset Recommended", "No"),
            ],
        ),
        (
            "pci",
            "PCI",
            [
                ("pci_bus", "Bus", gpu.bus.upper()),
                ("pci_device", "Device", "00"),
                ("pci_domain", "Domain", "0000"),
                ("pci_device_id", "Device Id", f"{pdev[1].upper()}{pdev[0].upper()}"),
                ("pci_bus_id", "Bus Id", gpu.bus_id),
                ("pci_sub_system_id", "Sub System Id", f"{sub[1].upper()}{sub[0].upper()}"),
                (
                    "pci_gpu_link_info",
                    "GPU Link Info",
                    [
                        (
                            "pcie_gen",
                            "PCIe Generation",
                            [("max_link_gen", "Max", "5"), ("current_link_gen", "Current", "5")],
                        ),
                        (
                            "link_widths",
                            "Link Width",
                            [
                                ("max_link_width", "Max", "16x"),
                                ("current_link_width", "Current", "16x"),
                            ],
                        ),
                    ],
                ),
                ("replay_counter", "Replays Since Reset", "0"),
                ("tx_util", "Tx Throughput", "0 KB/s"),
                ("rx_util", "Rx Throughput", "0 KB/s"),
            ],
        ),
        ("fan_speed", "Fan Speed", "N/A"),
        ("performance_state", "Performance State", "P0"),
        (
            "fb_memory_usage",
            "FB Memory Usage",
            [
                ("total", "Total", f"{mem} MiB"),
                ("reserved", "Reserved", f"{reserved} MiB"),
                ("used", "Used", "0 MiB"),
                ("free", "Free", f"{mem - reserved} MiB"),
            ],
        ),
        (
            "bar1_memory_usage",
            "BAR1 Memory Usage",
            [
                ("total", "Total", "131072 MiB"),
                ("used", "Used", "1 MiB"),
                ("free", "Free", "131071 MiB"),
            ],
        ),
        ("compute_mode", "Compute Mode", "Default"),
        (
            "utilization",
            "Utilization",
            [
                ("gpu_util", "Gpu", "0 %"),
                ("memory_util", "Memory", "0 %"),
                ("encoder_util", "Encoder", "0 %"),
                ("decoder_util", "Decoder", "0 %"),
            ],
        ),
        (
            "ecc_mode",
            "ECC Mode",
            [("current_ecc", "Current", "Enabled"), ("pending_ecc", "Pending", "Enabled")],
        ),
        (
            "ecc_errors",
            "ECC Errors",
            [
                ("volatile", "Volatile", ecc_block("volatile")),
                ("aggregate", "Aggregate", ecc_block("aggregate")),
            ],
        ),
        (
            "retired_pages",
            "Retired Pages",
            [
                (
                    "multiple_single_bit_retirement",
                    "Single Bit ECC",
                    [("retired_count", None, "N/A"), ("retired_pagelist", None, "N/A")],
                ),
                (
                    "double_bit_retirement",
                    "Double Bit ECC",
                    [("retired_count", None, "N/A"), ("retired_pagelist", None, "N/A")],
                ),
                ("pending_blacklist", "Pending Page Blacklist", "N/A"),
                ("pending_retirement", None, "N/A"),
            ],
        ),
        (
            "remapped_rows",
            "Remapped Rows",
            [
                ("remapped_row_corr", "Correctable Error", "0"),
                ("remapped_row_unc", "Uncorrectable Error", str(ecc)),
                ("remapped_row_pending", "Pending", "Yes" if gpu.remap_pending else "No"),
                ("remapped_row_failure", "Remapping Failure Occurred", "No"),
                (
                    "row_remapper_histogram",
                    "Bank Remap Availability Histogram",
                    [
                        ("row_remapper_histogram_max", "Max", f"{2560 - ecc} bank(s)"),
                        (
                            "row_remapper_histogram_high",
                            "High",
                            f"{min(ecc, 1)} bank(s)" if ecc else "0 bank(s)",
                        ),
                        ("row_remapper_histogram_partial", "Partial", "0 bank(s)"),
                        ("row_remapper_histogram_low", "Low", "0 bank(s)"),
                        ("row_remapper_histogram_none", "None", "0 bank(s)"),
                    ],
                ),
            ],
        ),
        (
            "temperature",
            "Temperature",
            [
                ("gpu_temp", "GPU Current Temp", f"{gpu.temp} C"),
                ("gpu_temp_max_threshold", None, "92 C"),
                ("gpu_temp_slow_threshold", None, "89 C"),
                ("gpu_target_temperature", "GPU Target Temperature", "N/A"),
                ("memory_temp", "Memory Current Temp", f"{gpu.temp + 8} C"),
            ],
        ),
        (
            "gpu_power_readings",
            "GPU Power Readings",
            [
                ("power_state", None, "P0"),
                ("power_draw", "Power Draw", f"{gpu.power_draw:.2f} W"),
                ("current_power_limit", "Current Power Limit", pmax),
                ("requested_power_limit", "Requested Power Limit", pmax),
                ("default_power_limit", "Default Power Limit", pmax),
                ("min_power_limit", "Min Power Limit", "200.00 W"),
                ("max_power_limit", "Max Power Limit", pmax),
            ],
        ),
        (
            "clocks",
            "Clocks",
            [
                ("graphics_clock", "Graphics", "345 MHz"),
                ("sm_clock", "SM", "345 MHz"),
                ("mem_clock", "Memory", f"{clocks['memory']} MHz"),
                ("video_clock", "Video", "765 MHz"),
            ],
        ),
        (
            "max_clocks",
            "Max Clocks",
            [
                ("graphics_clock", "Graphics", f"{clocks['graphics']} MHz"),
                ("sm_clock", "SM", f"{clocks['graphics']} MHz"),
                ("mem_clock", "Memory", f"{clocks['memory']} MHz"),
                ("video_clock", "Video", f"{clocks['video']} MHz"),
            ],
        ),
        ("fabric", "Fabric", [("state", "State", state), ("status", "Status", status)]),
        ("processes", "Processes", "None"),
    ]


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_xml(nodes: list, depth: int, out: list[str]) -> None:
    pad = "\t" * depth
    for tag, _label, value in nodes:
        if tag is None:
            continue
        if isinstance(value, list):
            out.append(f"{pad}<{tag}>")
            render_xml(value, depth + 1, out)
            out.append(f"{pad}</{tag}>")
        elif tag in ("processes", "mig_devices") and value == "None":
            out.append(f"{pad}<{tag}>\n{pad}</{tag}>")
        else:
            out.append(f"{pad}<{tag}>{_xml_escape(value)}</{tag}>")


def render_text(nodes: list, depth: int, out: list[str]) -> None:
    pad = "    " * depth
    for _tag, label, value in nodes:
        if label is None:
            continue
        if isinstance(value, list):
            out.append(f"{pad}{label}")
            render_text(value, depth + 1, out)
        else:
            out.append(f"{(pad + label).ljust(42)}: {value}")


def _timestamp() -> str:
    return time.strftime("%a %b %e %H:%M:%S %Y")


def query_xml(prof: dict, gpus: list, attached: int) -> str:
    out = [
        '<?xml version="1.0" ?>',
        '<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">',
        "<nvidia_smi_log>",
        f"\t<timestamp>{_timestamp()}</timestamp>",
        f"\t<driver_version>{VERSION}</driver_version>",
        f"\t<cuda_version>{CUDA_VERSION}</cuda_version>",
        f"\t<attached_gpus>{attached}</attached_gpus>",  # all GPUs, even with -i
    ]
    for gpu in gpus:
        out.append(f'\t<gpu id="{gpu.bus_id}">')
        render_xml(gpu_tree(prof, gpu), 2, out)
        out.append("\t</gpu>")
    out.append("</nvidia_smi_log>")
    return "\n".join(out) + "\n"


def query_text(prof: dict, gpus: list, attached: int) -> str:
    out = [
        "",
        "==============NVSMI LOG==============",
        "",
        f"{'Timestamp'.ljust(42)}: {_timestamp()}",
        f"{'Driver Version'.ljust(42)}: {VERSION}",
        f"{'CUDA Version'.ljust(42)}: {CUDA_VERSION}",
        "",
        f"{'Attached GPUs'.ljust(42)}: {attached}",
    ]
    for gpu in gpus:
        out.append(f"GPU {gpu.bus_id}")
        render_text(gpu_tree(prof, gpu), 1, out)
        out.append("")
    return "\n".join(out) + "\n"


def _csv_fields(prof: dict, gpu: simlib.Gpu, count: int) -> dict:
    """--query-gpu field -> (header unit or None, value with unit)."""
    mem = int(prof.get("memory_mib", 81559))
    reserved = int(prof.get("memory_reserved_mib", 551))
    state, status = simlib.fabric(prof)
    pmax = f"{float(prof.get('power_limit_w', 700)):.2f} W"
    pdev = prof.get("pci_device", "10de:2330").split(":")
    ecc = str(gpu.ecc_uncorrectable)
    return {
        "timestamp": (None, time.strftime("%Y/%m/%d %H:%M:%S.000")),
        "driver_version": (None, VERSION),
        "count": (None, str(count)),
        "name": (None, gpu.name),
        "gpu_name": (None, gpu.name),
        "serial": (None, gpu.serial),
        "uuid": (None, gpu.uuid),
        "gpu_uuid": (None, gpu.uuid),
        "pci.bus_id": (None, gpu.bus_id),
        "gpu_bus_id": (None, gpu.bus_id),
        "pci.domain": (None, "0x0000"),
        "pci.bus": (None, f"0x{gpu.bus.upper()}"),
        "pci.device_id": (None, f"0x{pdev[1].upper()}{pdev[0].upper()}"),
        "index": (None, str(gpu.index)),
        "persistence_mode": (None, _persistence()),
        "vbios_version": (None, prof.get("vbios", "96.00.74.00.01")),
        "pstate": (None, "P0"),
        "memory.total": ("MiB", f"{mem} MiB"),
        "memory.reserved": ("MiB", f"{reserved} MiB"),
        "memory.used": ("MiB", "0 MiB"),
        "memory.free": ("MiB", f"{mem - reserved} MiB"),
        "compute_mode": (None, "Default"),
        "compute_cap": (None, prof.get("compute_cap", "9.0")),
        "utilization.gpu": ("%", "0 %"),
        "utilization.memory": ("%", "0 %"),
        "ecc.mode.current": (None, "Enabled"),
        "ecc.mode.pending": (None, "Enabled"),
        "ecc.errors.corrected.volatile.total": (None, "0"),
        "ecc.errors.corrected.aggregate.total": (None, "0"),
        "ecc.errors.uncorrected.volatile.total": (None, ecc),
        "ecc.errors.uncorrected.aggregate.total": (None, ecc),
        "retired_pages.pending": (None, "[N/A]"),
        "remapped_rows.correctable": (None, "0"),
        "remapped_rows.uncorrectable": (None, ecc),
        "remapped_rows.pending": (None, "Yes" if gpu.remap_pending else "No"),
        "remapped_rows.failure": (None, "No"),
        "temperature.gpu": (None, str(gpu.temp)),
        "temperature.memory": (None, str(gpu.temp + 8)),
        "power.draw": ("W", f"{gpu.power_draw:.2f} W"),
        "power.limit": ("W", pmax),
        "power.max_limit": ("W", pmax),
        "clocks.max.graphics": ("MHz", f"{prof.get('clocks', {}).get('graphics', 1980)} MHz"),
        "mig.mode.current": (None, "Disabled"),
        "mig.mode.pending": (None, "Disabled"),
        "fabric.state": (None, state),
        "fabric.status": (None, status),
    }


def query_gpu(prof: dict, gpus: list, fields: list[str], fmt: set[str]) -> int:
    known = (
        _csv_fields(prof, gpus[0], len(gpus)) if gpus else _csv_fields(prof, simlib.Gpu(prof, 0), 0)
    )
    for f in fields:
        if f not in known:
            sys.stdout.write(f'Field "{f}" is not a valid field to query.\n\n')
            return 2
    lines = []
    if "noheader" not in fmt:
        units = [known[f][0] for f in fields]
        header = [f if u is None else f"{f} [{u}]" for f, u in zip(fields, units, strict=True)]
        lines.append(", ".join(header))
    for gpu in gpus:
        row = _csv_fields(prof, gpu, len(gpus))
        values = []
        for f in fields:
            unit, value = row[f]
            if "nounits" in fmt and unit and value.endswith(" " + unit):
                value = value[: -len(unit) - 1]
            values.append(value)
        lines.append(", ".join(values))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def topo(prof: dict, gpus: list) -> str:
    n = len(gpus)
    link = prof.get("nvlink", "NV18") if int(prof.get("nvswitch_count", 0)) else "SYS"
    cols = [f"GPU{i}" for i in range(n)]
    out = ["\t" + "\t".join(cols) + "\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID"]
    cores = int(prof.get("cpu_cores", 112))
    half = cores // 2
    for i in range(n):
        numa = 0 if i < n / 2 else 1
        aff = f"0-{half - 1}" if numa == 0 else f"{half}-{cores - 1}"
        cells = [" X " if j == i else link for j in range(n)]
        out.append(f"GPU{i}\t" + "\t".join(cells) + f"\t{aff}\t{numa}\t\tN/A")
    out += [
        "",
        "Legend:",
        "",
        "  X    = Self",
        "  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)",
        "  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node",
        "  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)",
        "  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)",
        "  PIX  = Connection traversing at most a single PCIe bridge",
        "  NV#  = Connection traversing a bonded set of # NVLinks",
    ]
    return "\n".join(out) + "\n"


def summary(prof: dict, gpus: list) -> str:
    """The default table (`nvidia-smi` without options), in the R580/590 layout."""
    sep = "+-----------------------------------------+------------------------+----------------------+"
    wide = "+-----------------------------------------------------------------------------------------+"
    out = [
        time.strftime("%a %b %d %H:%M:%S %Y") + "       ",
        wide,
        f"| NVIDIA-SMI {VERSION:<23}Driver Version: {VERSION:<15}CUDA Version: {CUDA_VERSION:<9}|",
        sep,
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                        |               MIG M. |",
        "|=========================================+========================+======================|",
    ]
    mem = int(prof.get("memory_mib", 81559))
    cap = int(float(prof.get("power_limit_w", 700)))
    pm = "On" if _persistence() == "Enabled" else "Off"
    for g in gpus:
        out.append(
            f"| {g.index:>3}  {g.name[:30]:<30}{pm:>3}  | {g.bus_id:>18} {'Off':>3} | {g.ecc_uncorrectable:>20} |"
        )
        out.append(
            f"| {'N/A':>3} {g.temp:>4}C {'P0':>5} {int(g.power_draw):>14}W / {cap:>4}W |{0:>8}MiB / {mem:>6}MiB | {0:>6}%{'Default':>13} |"
        )
        out.append(f"|{'':41}|{'':24}|{'Disabled':>21} |")
        out.append(sep)
    out += [
        "",
        wide,
        "| Processes:                                                                              |",
        "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |",
        "|        ID   ID                                                               Usage      |",
        "|=========================================================================================|",
        "|  No running processes found                                                             |",
        wide,
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--version"]:
        sys.stdout.write(
            f"NVIDIA-SMI version  : {VERSION}\nNVML version        : {simlib.short_version(VERSION)}\n"
            f"DRIVER version      : {simlib.loaded_module() or 'N/A'}\nCUDA Version        : {CUDA_VERSION}\n"
        )
        return 0
    loaded = simlib.loaded_module()
    if loaded is None:
        sys.stdout.write(NO_DRIVER)
        return 9
    if loaded != VERSION:
        sys.stdout.write(
            f"Failed to initialize NVML: Driver/library version mismatch\nNVML library version: {simlib.short_version(VERSION)}\n"
        )
        return 18
    prof = simlib.profile()
    gpus = simlib.gpus(prof)
    attached = len(gpus)
    args = list(argv)
    index = None
    for flag in ("-i", "--id"):
        if flag in args:
            pos = args.index(flag)
            if pos + 1 >= len(args):
                sys.stdout.write(INVALID_ARGS)
                return 2
            index = args[pos + 1]
            del args[pos : pos + 2]
    for a in list(args):
        if a.startswith("--id="):
            index = a.split("=", 1)[1]
            args.remove(a)
    if index is not None:
        gpus = [
            g
            for g in gpus
            if str(g.index) == index or g.uuid == index or g.bus_id.lower() == index.lower()
        ]
        if not gpus:
            sys.stdout.write("No devices were found\n")
            return 6
    if args == ["topo", "-m"]:
        sys.stdout.write(topo(prof, gpus))
        return 0
    if args in (["-L"], ["--list-gpus"]):
        sys.stdout.write("".join(f"GPU {g.index}: {g.name} (UUID: {g.uuid})\n" for g in gpus))
        return 0
    flags = set(args)
    if flags and flags <= {"-q", "--query", "-x", "--xml-format"} and flags & {"-q", "--query"}:
        sys.stdout.write(
            query_xml(prof, gpus, attached)
            if flags & {"-x", "--xml-format"}
            else query_text(prof, gpus, attached)
        )
        return 0
    query = [a for a in args if a.startswith("--query-gpu=")]
    fmt = [a for a in args if a.startswith("--format=")]
    if len(query) == 1 and len(fmt) == 1 and len(args) == 2:
        kinds = set(fmt[0].split("=", 1)[1].split(","))
        if "csv" not in kinds or not kinds <= {"csv", "noheader", "nounits"}:
            sys.stdout.write(INVALID_ARGS)
            return 2
        fields = [f.strip() for f in query[0].split("=", 1)[1].split(",") if f.strip()]
        return query_gpu(prof, gpus, fields, kinds)
    if not args:
        sys.stdout.write(summary(prof, gpus))
        return 0
    sys.stdout.write(INVALID_ARGS)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
