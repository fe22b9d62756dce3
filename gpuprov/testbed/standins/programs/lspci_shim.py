#!/usr/bin/python3
"""lspci shim of the gpuprov GPU simulator: the real lspci's output plus the simulated GPUs and
NVSwitches of /etc/gpuprov-sim/profile.json, in lspci's own line format. Supports the options
provisioning uses: -n, -nn, -D, -d VENDOR:[DEVICE]; other options go to the real lspci only."""

from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "@LIBREL@"))
import simlib  # noqa: E402

REAL = ("/usr/bin/lspci", "/bin/lspci", "/usr/sbin/lspci", "/sbin/lspci")


def simulated(prof: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(slot, class name, class id, device name, vendor:device, rev) for each simulated device."""
    devices = []
    fallen = int(simlib.faults(prof).get("missing_gpus", 0))
    gpus = simlib.all_gpus(prof)
    for gpu in gpus:
        rev = "ff" if gpu.index >= len(gpus) - fallen else prof.get("pci_rev", "a1")
        cls = (
            ("3D controller", "0302")
            if prof.get("pci_class", "0302") == "0302"
            else ("VGA compatible controller", "0300")
        )
        devices.append(
            (
                f"{gpu.bus}:00.0",
                cls[0],
                cls[1],
                prof.get("pci_name", "GH100 [H100 SXM5 80GB]"),
                prof.get("pci_device", "10de:2330"),
                rev,
            )
        )
    for i in range(int(prof.get("nvswitch_count", 0))):
        bus = simlib.NVSWITCH_BUS_IDS[i % len(simlib.NVSWITCH_BUS_IDS)]
        devices.append(
            (
                f"{bus}:00.0",
                "Bridge",
                "0680",
                prof.get("nvswitch_pci_name", "GH100 [H100 NVSwitch]"),
                prof.get("nvswitch_pci_device", "10de:22a3"),
                "a1",
            )
        )
    return devices


def main(argv: list[str]) -> int:
    real = next((p for p in REAL if os.path.exists(p)), None)
    out = ""
    rc = 0
    if real:
        proc = subprocess.run([real, *argv], capture_output=True, text=True)
        out, rc = proc.stdout, proc.returncode
        sys.stderr.write(proc.stderr)
    numeric = "-nn" in argv and 2 or ("-n" in argv and 1 or 0)
    domain = "-D" in argv
    want = None
    for i, a in enumerate(argv):
        if a == "-d" and i + 1 < len(argv):
            want = argv[i + 1]
        elif a.startswith("-d") and len(a) > 2:
            want = a[2:]
    lines = [line for line in out.splitlines() if line]
    for slot, cname, cid, dname, ids, rev in simulated(simlib.profile()):
        if want:
            wv, _, wd = want.partition(":")
            v, _, d = ids.partition(":")
            if (wv and wv.lower() != v) or (wd and wd.lower() != d):
                continue
        slot = f"0000:{slot}" if domain else slot
        if numeric == 2:
            lines.append(f"{slot} {cname} [{cid}]: NVIDIA Corporation {dname} [{ids}] (rev {rev})")
        elif numeric == 1:
            lines.append(f"{slot} {cid}: {ids} (rev {rev})")
        else:
            lines.append(f"{slot} {cname}: NVIDIA Corporation {dname} (rev {rev})")
    lines.sort(
        key=lambda line: line.split(" ", 1)[0] if domain else "0000:" + line.split(" ", 1)[0]
    )
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
