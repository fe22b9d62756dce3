"""systemd units: enabled and running, compared against HostState's service states."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation


@operation()
def service_running(
    unit: str,
    enabled: bool = True,
    running: bool = True,
    restart: bool = False,
    active_now: str | None = None,
    enabled_now: str | None = None,
):
    """
    Make a unit enabled/disabled and running/stopped; restart it when asked.

    + unit: unit name without ".service"
    + enabled: enable at boot
    + running: running now
    + restart: restart even if running (its package or configuration changed)
    + active_now: `systemctl is-active` now (HostState)
    + enabled_now: `systemctl is-enabled` now (HostState)
    """
    quoted = shlex.quote(f"{unit}.service")
    commands = []
    if enabled and enabled_now != "enabled":
        commands.append(f"systemctl enable {quoted}")
    elif not enabled and enabled_now == "enabled":
        commands.append(f"systemctl disable {quoted}")
    if running and (restart or active_now != "active"):
        verb = "restart" if restart and active_now == "active" else "start"
        commands.append(f"systemctl {verb} {quoted}")
    elif not running and active_now == "active":
        commands.append(f"systemctl stop {quoted}")
    if not commands:
        host.noop(
            f"{unit} is {'enabled' if enabled else 'disabled'} and "
            f"{'running' if running else 'stopped'}"
        )
        return
    yield from commands
