"""`gpuprov lab`: the local Vagrant lab of simulated GPU hosts (docs/lab.md)."""

from __future__ import annotations

import click
from gpuprov.cli.lab.inventory import inventory


@click.group(
    epilog="""\b
Examples:
  vagrant up && gpuprov lab inventory --vagrant-dir . --to inventories/vagrant.yaml
  make demo          # everything: box, lab, host keys, dry run, staged apply, verify"""
)
def lab() -> None:
    """The local Vagrant lab (mirror01 + gpuNN with simulated GPUs)."""


lab.add_command(inventory)
