"""Shared helpers of the gpuprov stand-in NVIDIA programs (test fixtures, not NVIDIA software).

State of the simulated host, all under $GPUPROV_SIM_ROOT (default /) so tests can run the
programs against a throwaway directory:
  etc/gpuprov-sim/profile.json        the simulated GPU profile (what hardware is there)
  usr/lib/nvidia-sim/module/version   "<version> <flavour>" of the installed kernel module
  run/nvidia-sim/module-version       the loaded module (written at boot; tmpfs)
  run/nvidia-sim/module-flavour       open | proprietary
  run/nvidia-sim/fabric-state         "Completed" once fabric manager ran
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

ROOT = Path(os.environ.get("GPUPROV_SIM_ROOT", "/"))
PROFILE = ROOT / "etc/gpuprov-sim/profile.json"
MODULE_FILE = ROOT / "usr/lib/nvidia-sim/module/version"
RUN = ROOT / "run/nvidia-sim"
LOADED_VERSION = RUN / "module-version"
LOADED_FLAVOUR = RUN / "module-flavour"
FABRIC_STATE = RUN / "fabric-state"
LOAD_ERROR = RUN / "load-error"

# Bus ids of a typical 8-GPU HGX baseboard; a profile may give its own "bus_ids".
DEFAULT_BUS_IDS = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]
NVSWITCH_BUS_IDS = ["05", "06", "07", "08", "09", "0a"]


def read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def profile() -> dict:
    try:
        return json.loads(PROFILE.read_text())
    except OSError:
        return {"profile": "none", "gpu_count": 0, "nvswitch_count": 0}


def faults(prof: dict) -> dict:
    return prof.get("faults") or {}


def installed_module() -> tuple[str, str] | None:
    text = read(MODULE_FILE)
    if not text:
        return None
    version, _, flavour = text.partition(" ")
    return version, flavour or "open"


def loaded_module() -> str | None:
    return read(LOADED_VERSION)


def load_module() -> str | None:
    """What modprobe does: load the installed module; refuse it under Secure Boot unless signed."""
    mod = installed_module()
    if mod is None:
        return "Module nvidia not found in directory /lib/modules"
    prof = profile()
    if prof.get("secure_boot") and not prof.get("mok_enrolled"):
        RUN.mkdir(parents=True, exist_ok=True)
        LOAD_ERROR.write_text(
            "modprobe: ERROR: could not insert 'nvidia': Key was rejected by service\n"
        )
        return "Key was rejected by service"
    if prof.get("open_modules_required") and mod[1] == "proprietary":
        # Real: "NVRM: The NVIDIA GPU ... requires use of the NVIDIA open kernel modules."
        RUN.mkdir(parents=True, exist_ok=True)
        LOAD_ERROR.write_text("modprobe: ERROR: could not insert 'nvidia': No such device\n")
        return "this GPU requires the NVIDIA open kernel modules"
    RUN.mkdir(parents=True, exist_ok=True)
    LOADED_VERSION.write_text(mod[0] + "\n")
    LOADED_FLAVOUR.write_text(mod[1] + "\n")
    if LOAD_ERROR.exists():
        LOAD_ERROR.unlink()
    make_device_nodes(prof)
    return None


# The real driver's character devices (major 195; nvidia-uvm gets a dynamic major, 510 here).
_CONTROL_NODES = (("nvidiactl", 195, 255), ("nvidia-modeset", 195, 254))
_UVM_NODES = (("nvidia-uvm", 510, 0), ("nvidia-uvm-tools", 510, 1))


def make_device_nodes(prof: dict) -> None:
    """/dev/nvidia* as the loaded driver creates them: container runtimes read them to pass
    a GPU through CDI. Only on a real (simulated) host: a throwaway GPUPROV_SIM_ROOT has
    no /dev to make nodes in, and nothing there reads them."""
    if str(ROOT) != "/" or os.geteuid() != 0:
        return
    count = int(prof.get("gpu_count", 0))
    nodes = [(f"nvidia{i}", 195, i) for i in range(count)] + [*_CONTROL_NODES, *_UVM_NODES]
    for name, major, minor in nodes:
        path = Path("/dev") / name
        if not path.exists():
            os.mknod(path, 0o20666, os.makedev(major, minor))  # S_IFCHR | rw for all


def host_seed() -> str:
    mid = read(ROOT / "etc/machine-id") or ""
    return mid or socket.gethostname()


def _hexdigest(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()


class Gpu:
    """One simulated GPU: identifiers derive from the host, so each host's GPUs differ."""

    def __init__(self, prof: dict, index: int) -> None:
        self.prof = prof
        self.index = index
        bus_ids = prof.get("bus_ids") or DEFAULT_BUS_IDS
        self.bus = bus_ids[index % len(bus_ids)]
        self.bus_id = f"00000000:{self.bus.upper()}:00.0"
        d = _hexdigest(host_seed(), prof.get("profile"), index)
        self.uuid = f"GPU-{d[0:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"
        self.serial = str(1650000000000 + int(d[32:40], 16) % 10000000)
        self.module_id = (index % 8) + 1
        ecc = {str(k): int(v) for k, v in (faults(prof).get("ecc_uncorrectable") or {}).items()}
        self.ecc_uncorrectable = ecc.get(str(index), 0)
        self.remap_pending = bool(faults(prof).get("retired_pages_pending")) and (
            not ecc or self.ecc_uncorrectable > 0
        )
        self.temp = 30 + (int(d[40:42], 16) % 10)
        self.power_draw = 60 + (int(d[42:44], 16) % 2000) / 100

    @property
    def name(self) -> str:
        return self.prof.get("gpu_model", "NVIDIA GPU")


def gpus(prof: dict) -> list[Gpu]:
    """The GPUs the driver sees: missing_gpus fell off the bus (the last ones)."""
    present = int(prof.get("gpu_count", 0)) - int(faults(prof).get("missing_gpus", 0))
    return [Gpu(prof, i) for i in range(max(present, 0))]


def all_gpus(prof: dict) -> list[Gpu]:
    return [Gpu(prof, i) for i in range(int(prof.get("gpu_count", 0)))]


def fabric(prof: dict) -> tuple[str, str]:
    """Fabric state/status as nvidia-smi reports it."""
    if not int(prof.get("nvswitch_count", 0)):
        return "N/A", "N/A"
    if faults(prof).get("fabric_in_progress") or read(FABRIC_STATE) != "Completed":
        return "In Progress", "N/A"
    return "Completed", "Success"


def short_version(version: str) -> str:
    """580.95.05 -> 580.95 (the NVML version nvidia-smi prints)."""
    return ".".join(version.split(".")[:2])


def pid_alive(pidfile: Path) -> bool:
    text = read(pidfile)
    if not text or not text.isdigit():
        return False
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(pidfile: Path, foreground: bool, on_stop=None) -> int:
    """Stay resident like the real daemon: fork into the background unless foreground."""
    import signal
    import time

    if not foreground:
        pid = os.fork()
        if pid:
            for _ in range(100):  # the parent returns once the child wrote its pid file
                if read(pidfile) == str(pid):
                    break
                time.sleep(0.02)
            return 0
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{os.getpid()}\n")

    def stop(_sig, _frame):
        if on_stop:
            on_stop()
        if read(pidfile) == str(os.getpid()):
            pidfile.unlink()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        time.sleep(3600)
