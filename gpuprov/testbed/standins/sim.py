"""Put a simulated GPU profile on a test host (a root directory or anything that runs commands)."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path

PROFILE_PATH = "/etc/gpuprov-sim/profile.json"
# Runtime state of the simulator; clearing it and running SIM_LOAD is a simulated reboot.
RUN_DIR = "/run/nvidia-sim"


def profile_json(profile: dict) -> str:
    return json.dumps(profile, indent=2, sort_keys=True) + "\n"


def install_sim_profile(root_or_exec: Path | str | Callable[[str], object], profile: dict) -> None:
    """Write profile.json on a host.

    root_or_exec: the host's root directory (a chroot, a rootfs being built), or a callable
    that runs one shell command as root on the host (e.g. an SSH helper's run method).
    """
    text = profile_json(profile)
    if callable(root_or_exec):
        root_or_exec(
            f"mkdir -p {shlex.quote(os.path.dirname(PROFILE_PATH))} && "
            f"printf %s {shlex.quote(text)} > {PROFILE_PATH}.tmp && mv {PROFILE_PATH}.tmp {PROFILE_PATH}"
        )
        return
    target = Path(root_or_exec) / PROFILE_PATH.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(target)


# Pid files of the simulated daemons (the same paths the real ones use, where they have one).
DAEMON_PIDFILES = (
    "/run/nvidia-persistenced/nvidia-persistenced.pid",
    "/run/nvidia-fabricmanager/nv-fabricmanager.pid",
    "/run/nvidia-sim/nv-hostengine.pid",
)


def reboot_command(root: str = "") -> str:
    """A shell command that simulates a reboot on a host without systemd (a light host):
    stop the simulated daemons, forget /run/nvidia-sim, load the installed module as at boot.

    root: prefix of every path (a chroot seen from outside); empty on the host itself.
    """
    from .catalog import SIM_LOAD

    parts = []
    for pidfile in DAEMON_PIDFILES:
        path = shlex.quote(root + pidfile)
        parts.append(
            f'if [ -r {path} ]; then kill "$(cat {path})" 2>/dev/null || true; rm -f {path}; fi'
        )
    parts.append(f"rm -rf {shlex.quote(root + RUN_DIR)}")
    env = f"GPUPROV_SIM_ROOT={shlex.quote(root)} " if root else ""
    parts.append(f"{env}python3 {shlex.quote(root + SIM_LOAD)}")
    return "; ".join(parts)
