"""Boot-related operations: initramfs rebuilds and reboots that never hit the wrong
machine and happen at most once per apply."""

from __future__ import annotations

import socket
from pathlib import Path

from pyinfra import host
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.exceptions import OperationError

INITRAMFS = {
    "update-initramfs": "update-initramfs -u -k all",  # Debian, Ubuntu
    "dracut": "dracut -f --regenerate-all",  # RHEL, Rocky
}


@operation()
def initramfs_rebuild(tool: str, needed: bool, reason: str = ""):
    """
    Rebuild the initramfs so a module blacklist also applies at early boot.

    + tool: "update-initramfs" or "dracut"
    + needed: whether something that goes into the initramfs changed
    + reason: shown in the plan
    """
    if tool not in INITRAMFS:
        raise OperationError(f"unknown initramfs tool {tool!r} ({', '.join(INITRAMFS)})")
    if not needed:
        host.noop("initramfs is current")
        return
    yield INITRAMFS[tool]


def local_machine_id() -> str | None:
    try:
        return Path("/etc/machine-id").read_text().strip() or None
    except OSError:
        return None


def is_local_connector(h) -> bool:
    """@local, or any connector that runs commands on this machine without SSH."""
    name = getattr(h, "name", "") or ""
    connector = type(getattr(h, "connector", None)).__name__
    return name.startswith("@local") or connector == "LocalConnector"


def refuse_control_node(state, host) -> bool:  # noqa: F811 (pyinfra passes state, host by name)
    """Runs on the host just before the reboot command: the control node is the machine
    running gpuprov, recognised by /etc/machine-id (an SSH port forward to a VM on
    loopback is *not* the control node, so addresses alone cannot decide).

    The parameters must be called `state` and `host`: pyinfra only passes them to a
    FunctionCommand whose signature names both."""
    from pyinfra.facts.server import Command

    if is_local_connector(host):
        raise OperationError("refusing to reboot: this host runs through the local connector")
    remote = (host.get_fact(Command, "cat /etc/machine-id 2>/dev/null || true") or "").strip()
    mine = local_machine_id()
    if remote and mine and remote == mine:
        raise OperationError(
            f"refusing to reboot {host.name}: it is the control node running gpuprov "
            f"({socket.gethostname()}, same /etc/machine-id)"
        )
    return True


@operation()
def controlled_reboot(
    reasons: list[str],
    delay: int = 5,
    interval: int = 2,
    reboot_timeout: int = 600,
):
    """
    Reboot once for all `reasons` (none: no reboot), wait for the host and reconnect.
    Never reboots the control node (local connector, or the same /etc/machine-id).

    + reasons: why a reboot is due ("driver 580.95.05 installed, 570.133.20 loaded")
    + delay: seconds before the first reconnect attempt
    + interval: seconds between attempts
    + reboot_timeout: give up after this many seconds

    **Example:**

    .. code:: python

        controlled_reboot(reasons=["nouveau was loaded"])
    """
    if not reasons:
        host.noop("no reboot needed")
        return
    if is_local_connector(host):
        raise OperationError(
            f"refusing to reboot: this host runs through the local connector ({'; '.join(reasons)})"
        )
    # Imported here, not at the top: pyinfra.operations.server imports every package
    # manager's and init system's operations and facts (~85 ms of CPU), and a converged
    # host never reboots (docs/performance.md).
    from pyinfra.operations import server

    yield FunctionCommand(refuse_control_node, (), {})
    yield from server.reboot._inner(delay=delay, interval=interval, reboot_timeout=reboot_timeout)


@operation()
def skipped(reason: str):
    """
    A step this host deliberately skips, shown in the plan with its reason (the op is
    still added, so every host of a wave has the same op sequence).

    + reason: why nothing is done
    """
    host.noop(reason)
    return
    yield  # a generator that yields nothing
