#!/usr/bin/python3
"""dcgmi stand-in (gpuprov TEST STAND-IN, not NVIDIA software): discovery -l and diag -r 1."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "@LIBREL@"))
import simlib  # noqa: E402

VERSION = "@VERSION@"
HOSTENGINE_PID = simlib.ROOT / "run/nvidia-sim/nv-hostengine.pid"
NO_HOSTENGINE = (
    "Error: unable to establish a connection to the specified host: localhost\n"
    "Error: Unable to connect to host engine. Host engine connection invalid/disconnected.\n"
)
EXIT_NO_HOSTENGINE = 255
EXIT_DIAG_FAILED = 226
WIDTH = 46  # the Result column wraps every 46 characters, mid-word, like the real table


def _row(name: str, value: str) -> list[str]:
    chunks = [value[i : i + WIDTH] for i in range(0, len(value), WIDTH)] or [""]
    lines = [f"| {name:<25} | {chunks[0]:<{WIDTH}} |"]
    lines += [f"| {'':<25} | {c:<{WIDTH}} |" for c in chunks[1:]]
    return lines


def _section(title: str) -> str:
    left = f"|-----  {title}  "
    return left + "-" * (28 - len(left)) + "+" + "-" * 48 + "|"


def diag(prof: dict) -> int:
    gpus = simlib.gpus(prof)
    loaded = simlib.loaded_module()
    results: list[tuple[str, str, str | None]] = []
    expected = int(prof.get("gpu_count", 0))
    nvml_error = None
    if loaded is None:
        nvml_error = "Failed to initialize NVML: the NVIDIA driver is not loaded."
    elif len(gpus) < expected:
        nvml_error = f"Unable to get the device handle for GPU {len(gpus)}: Unknown Error (GPU has fallen off the bus)"
    results.append(("Denylist", "Pass", None))
    results.append(("NVML Library", "Fail" if nvml_error else "Pass", nvml_error))
    results.append(("CUDA Main Library", "Pass", None))
    results.append(("Permissions and OS Blocks", "Pass", None))
    persistence = simlib.pid_alive(simlib.ROOT / "run/nvidia-persistenced/nvidia-persistenced.pid")
    pm_error = ", ".join(
        f"Persistence mode for GPU {g.index} is currently disabled. The DCGM diagnostic requires peristence "
        f'mode to be enabled. Enable persistence mode by running "nvidia-smi -i <gpuId> -pm 1 " as root.'
        for g in gpus
    )
    results.append(
        ("Persistence Mode", "Pass" if persistence else "Fail", None if persistence else pm_error)
    )
    results.append(("Environment Variables", "Pass", None))
    bad = [g for g in gpus if g.ecc_uncorrectable or g.remap_pending]
    remap_error = ", ".join(
        f"GPU {g.index} had uncorrectable memory errors and row remapping is pending. Drain the GPU and reset it or reboot the node."
        for g in bad
    )
    results.append(("Page Retirement/Row Remap", "Fail" if bad else "Pass", remap_error or None))
    results.append(("Graphics Processes", "Pass", None))
    results.append(("Inforom", "Pass", None))

    device_ids = ",".join(prof.get("pci_device", "10de:2330").split(":")[1] for _ in gpus)
    border = "+---------------------------+------------------------------------------------+"
    out = ["Successfully ran diagnostic for group.", border]
    out.append(f"| {'Diagnostic':<25} | {'Result':<{WIDTH}} |")
    out.append("+===========================+================================================+")
    out.append(_section("Metadata"))
    out += _row("DCGM Version", VERSION)
    out += _row("Driver Version Detected", loaded or "N/A")
    out += _row("GPU Device IDs Detected", device_ids)
    out.append(_section("Deployment"))
    for name, result, error in results:
        out += _row(name, result)
        if error:
            out += _row("Error", error)
    out.append(border)
    sys.stdout.write("\n".join(out) + "\n")
    return EXIT_DIAG_FAILED if any(r == "Fail" for _, r, _ in results) else 0


def discovery(prof: dict) -> int:
    gpus = simlib.gpus(prof)
    line = "+--------+----------------------------------------------------------------------+"
    out = [
        f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} found.",
        line,
        "| GPU ID | Device Information                                                   |",
        line,
    ]
    for g in gpus:
        out.append(f"| {g.index:<6} | {'Name: ' + g.name:<68} |")
        out.append(f"| {'':<6} | {'PCI Bus ID: ' + g.bus_id:<68} |")
        out.append(f"| {'':<6} | {'Device UUID: ' + g.uuid:<68} |")
        out.append(line)
    switches = int(prof.get("nvswitch_count", 0))
    out.append(f"{switches} NvSwitch{'es' if switches != 1 else ''} found.")
    out += ["+-----------+", "| Switch ID |", "+-----------+"]
    out += [f"| {i:<9} |" for i in range(switches)]
    out.append("+-----------+")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] in (["-v"], ["--version"]):
        print(f"Version : {VERSION}")
        return 0
    if not simlib.pid_alive(HOSTENGINE_PID):
        sys.stderr.write(NO_HOSTENGINE)
        return EXIT_NO_HOSTENGINE
    prof = simlib.profile()
    if (
        argv[:1] == ["diag"]
        and len(argv) == 3
        and argv[1] in ("-r", "--run")
        and argv[2] in ("1", "quick")
    ):
        return diag(prof)
    if argv == ["discovery", "-l"]:
        return discovery(prof)
    sys.stderr.write(
        "ERROR: Unsupported arguments for the gpuprov stand-in dcgmi: " + " ".join(argv) + "\n"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
