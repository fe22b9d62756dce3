"""`gpuprov lab box` and `gpuprov lab hardware`: what `vagrant up` needs (`make lab-box`)."""

from __future__ import annotations

import click
from gpuprov.cli.app import App


@click.command()
@click.option("--force", is_flag=True, help="Rebuild even if the cached box is current.")
@click.pass_obj
def box(app: App, force: bool) -> None:
    """Build the local box gpuprov/debian12-local from the test bed rootfs and add it."""
    from gpuprov.lab.box import add_box, build_box

    built = build_box(force=force)
    app.info(f"{'built' if built.built else 'reused'} {built.file}")
    app.info(f"{'added' if add_box(built) else 'already added'}: {built.name}")


@click.command()
@click.pass_obj
def hardware(app: App) -> None:
    """Write the simulated GPU hardware the Vagrantfile installs (lab/hardware)."""
    from gpuprov.lab.demo import write_hardware
    from gpuprov.lab.vagrant import LabSettings

    for path in write_hardware(LabSettings.from_env().dir / "hardware"):
        app.info(str(path))
