#!/usr/bin/python3
"""nv-fabricmanager stand-in (gpuprov TEST STAND-IN, not NVIDIA software).

Like the real one it refuses to start unless its version equals the loaded driver module's,
and on a host without NVSwitches. When it runs, the GPUs' fabric state becomes Completed.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "@LIBREL@"))
import simlib  # noqa: E402

VERSION = "@VERSION@"
PIDFILE = simlib.ROOT / "run/nvidia-fabricmanager/nv-fabricmanager.pid"
LOG = simlib.ROOT / "var/log/fabricmanager.log"


def log(message: str) -> None:
    line = f"[{time.strftime('%b %d %Y %H:%M:%S')}] [ERROR] [tid {os.getpid()}] {message}"
    sys.stderr.write(message + "\n")
    try:
        LOG.parent.mkdir(parents=True, exist_ok=True)
        with LOG.open("a") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def main(argv: list[str]) -> int:
    if argv[:1] in (["-v"], ["--version"]):
        print(f"Fabric Manager version is : {VERSION}")
        return 0
    print(
        f"Starting fabric manager with config file /usr/share/nvidia/nvswitch/fabricmanager.cfg version {VERSION}"
    )
    loaded = simlib.loaded_module()
    if loaded is None:
        log(
            "fabric manager failed to open NVIDIA GPU driver interface, make sure that the driver is loaded"
        )
        return 1
    if loaded != VERSION:
        log(
            f"fabric manager NVIDIA GPU driver interface version {VERSION} don't match with driver version "
            f"{loaded}. Please update with matching NVIDIA driver package."
        )
        return 1
    prof = simlib.profile()
    if not int(prof.get("nvswitch_count", 0)):
        log(
            "fabric manager: no NVSwitch devices found. request to query NVSwitch device information from "
            "NVSwitch driver failed with error:WARNING Nothing to do [NV_WARN_NOTHING_TO_DO]"
        )
        return 1
    simlib.RUN.mkdir(parents=True, exist_ok=True)
    simlib.FABRIC_STATE.write_text("Completed\n")
    if os.environ.get("GPUPROV_SIM_ONESHOT"):
        return 0

    def stopped() -> None:
        if simlib.FABRIC_STATE.exists():
            simlib.FABRIC_STATE.unlink()

    return simlib.serve(PIDFILE, foreground="--foreground" in argv, on_stop=stopped)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
