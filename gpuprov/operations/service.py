"""systemd units: enabled and running, compared against HostState's service states."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation


@operation()
def service_running(
    name: str,
    enabled: bool = True,
    running: bool = True,
    restart: bool = False,
    active_now: str | None = None,
    enabled_now: str | None = None,
):
    """
    Make a unit enabled/disabled and running/stopped; restart it when asked.

    + name: unit name without ".service"
    + enabled: enable at boot
    + running: running now
    + restart: restart even if running (its package or configuration changed)
    + active_now: `systemctl is-active` now (HostState)
    + enabled_now: `systemctl is-enabled` now (HostState)
    """
    unit = shlex.quote(f"{name}.service")
    commands = []
    if enabled and enabled_now != "enabled":
        commands.append(f"systemctl enable {unit}")
    elif not enabled and enabled_now == "enabled":
        commands.append(f"systemctl disable {unit}")
    if running and (restart or active_now != "active"):
        verb = "restart" if restart and active_now == "active" else "start"
        commands.append(f"systemctl {verb} {unit}")
    elif not running and active_now == "active":
        commands.append(f"systemctl stop {unit}")
    if not commands:
        host.noop(
            f"{name} is {'enabled' if enabled else 'disabled'} and "
            f"{'running' if running else 'stopped'}"
        )
        return
    yield from commands
