"""`gpuprov lab`: the local Vagrant lab of simulated GPU hosts (docs/lab.md)."""

from __future__ import annotations

import click
from gpuprov.cli.lab.box import box, hardware
from gpuprov.cli.lab.capture import capture
from gpuprov.cli.lab.demo import clean, demo
from gpuprov.cli.lab.inventory import inventory


@click.group(
    epilog="""\b
Examples:
  vagrant up && gpuprov lab inventory --vagrant-dir . --to inventories/vagrant.yaml
  gpuprov lab demo   # everything: box, lab, host keys, dry run, staged apply, verify
  gpuprov lab clean  # destroy the VMs, remove the box and lab/"""
)
def lab() -> None:
    """The local Vagrant lab (mirror01 + gpuNN with simulated GPUs)."""


for command in (demo, clean, box, hardware, inventory, capture):
    lab.add_command(command)
