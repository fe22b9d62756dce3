"""`gpuprov inventory import ANSIBLE --to OUT.yaml`: convert an Ansible inventory (YAML or INI)."""

from __future__ import annotations

import click
from gpuprov.cli.app import App


@click.command("import")
@click.argument("source", metavar="ANSIBLE", type=click.Path(dir_okay=False))
@click.option("--to", "dest", required=True, type=click.Path(dir_okay=False),
              help="Inventory file to write (our format).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.pass_obj
def import_(app: App, source: str, dest: str, force: bool) -> None:
    """Convert an Ansible inventory (YAML, or INI such as DeepOps' config/inventory) to
    gpuprov's format, keeping a YAML file's comments.

    The result is validated first; nothing is written if it has errors. The file is
    written atomically and an existing one is only replaced with --force.
    """
    from gpuprov.inventory.convert import convert_file

    out = convert_file(source, dest, force=force)
    app.success(f"wrote {out}; check it with: gpuprov inventory check {out}")
