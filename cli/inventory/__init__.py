"""`gpuprov inventory`: check, show and import inventories (one module per command)."""

from __future__ import annotations

import click
from gpuprov.cli.inventory.check import check
from gpuprov.cli.inventory.import_ import import_
from gpuprov.cli.inventory.show import show


@click.group(
    epilog="""\b
Examples:
  gpuprov inventory check inventories/example.yaml
  gpuprov inventory show inventories/lab.yaml --limit 'lab-gpu0*' --output json
  gpuprov inventory import hosts.yaml --to inventories/site.yaml"""
)
def inventory() -> None:
    """Check, show and import cluster inventories (docs/inventory.md)."""


inventory.add_command(check)
inventory.add_command(show)
inventory.add_command(import_)
