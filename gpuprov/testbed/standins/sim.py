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
