"""`gpuprov lab inventory`: an inventory of the running Vagrant lab, host keys recorded."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli.app import App


@click.command()
@click.option(
    "--vagrant-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder of the lab's Vagrantfile.",
)
@click.option(
    "--to",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("inventories/vagrant.yaml"),
    show_default=True,
    help="The inventory file to write.",
)
@click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the VMs' host keys go (default: lab/known_hosts beside the Vagrantfile).",
)
@click.pass_obj
def inventory(app: App, vagrant_dir: Path, output: Path, known_hosts: Path | None) -> None:
    """Write an inventory from `vagrant ssh-config` of the running lab VMs.

    Each VM's host key is read with ssh-keyscan at its inventory address, checked against
    the key read over Vagrant's own session, and recorded in the known_hosts file the
    inventory names; gpuprov then checks host keys strictly. The GPUPROV_LAB_* settings
    (docs/lab.md) must match the ones the lab was brought up with.
    """
    from gpuprov.errors import ExitCode
    from gpuprov.lab.inventory import write_inventory
    from gpuprov.lab.vagrant import LabSettings

    vagrant_dir = vagrant_dir.resolve()
    if not (vagrant_dir / "Vagrantfile").is_file():
        app.abort(f"no Vagrantfile in {vagrant_dir}", ExitCode.BAD_INPUT)
    settings = LabSettings.from_env()
    settings.vagrantfile_dir = vagrant_dir
    settings.dir = vagrant_dir / "lab"
    path, hosts = write_inventory(settings, output, known_hosts)
    for h in hosts:
        app.info(f"{h.name}: {h.lab_address} ({h.role})")
    app.success(f"wrote {path}; host keys in {known_hosts or settings.dir / 'known_hosts'}")
