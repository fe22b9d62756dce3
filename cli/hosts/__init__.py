"""`gpuprov hosts ...`: host keys and other per-host chores."""

from __future__ import annotations

import click
from gpuprov.cli import LazyGroup


@click.group(cls=LazyGroup, lazy={"trust": "hosts.trust:trust"})
def hosts() -> None:
    """Manage the hosts of an inventory (host keys)."""
