"""`gpuprov lab demo` and `gpuprov lab clean`: the README's main job on a Vagrant lab
(`make demo`) and its undoing (`make demo-clean`)."""

from __future__ import annotations

import click
from gpuprov.cli.app import App


@click.command()
@click.pass_obj
def demo(app: App) -> None:
    """The main job across a real air gap: box, lab up, GPU hosts cut off but for mirror01,
    bundle build -> FAT32 stick -> verify -> import, dry run, apply (mirror first, then
    staged GPU waves), verify, then an image pull and a model fetch on a GPU host."""
    from gpuprov.lab.demo import Demo
    from gpuprov.lab.vagrant import LabSettings

    Demo(LabSettings.from_env()).run()


@click.command()
@click.pass_obj
def clean(app: App) -> None:
    """Destroy the lab's VMs, drop its firewall table, remove the box and the lab folder
    (bundle, stick image, keys: everything `demo` made)."""
    from gpuprov.lab.demo import clean as clean_lab
    from gpuprov.lab.vagrant import LabSettings

    clean_lab(LabSettings.from_env())
