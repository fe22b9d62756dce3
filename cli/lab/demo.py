"""`gpuprov lab demo` and `gpuprov lab clean`: the README's main job on a Vagrant lab
(`make demo`) and its undoing (`make demo-clean`)."""

from __future__ import annotations

import click
from gpuprov.cli.app import App


@click.command()
@click.pass_obj
def demo(app: App) -> None:
    """Build the box, bring the lab up, record host keys, dry run, staged apply, verify."""
    from gpuprov.lab.demo import Demo
    from gpuprov.lab.vagrant import LabSettings

    Demo(LabSettings.from_env()).run()


@click.command()
@click.pass_obj
def clean(app: App) -> None:
    """Destroy the lab's VMs, remove the box and the lab folder (everything `demo` made)."""
    from gpuprov.lab.demo import clean as clean_lab
    from gpuprov.lab.vagrant import LabSettings

    clean_lab(LabSettings.from_env())
