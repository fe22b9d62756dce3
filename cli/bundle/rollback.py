"""`gpuprov bundle rollback`: serve the previously imported bundle again."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import INVENTORY, OUTPUT
from gpuprov.cli.app import App


@click.command()
@INVENTORY
@click.option(
    "--root",
    default="/srv/gpuprov",
    show_default=True,
    help="Content root on the mirror host.",
)
@OUTPUT
@click.pass_obj
def rollback(app: App, inventory: Path, root: str, output: str) -> None:
    """Switch INVENTORY's mirror host back to the bundle it served before the last import.

    Atomic, like import; a second rollback undoes the first.

    \b
    Examples:
      gpuprov bundle rollback inventories/site.yaml
    """
    from gpuprov.bundle.importer import rollback as switch_back
    from gpuprov.bundle.remote import Remote
    from gpuprov.inventory.loader import load_inventory

    remote = Remote.mirror_of(load_inventory(inventory))
    current, previous = switch_back(remote, root=root)
    if output == "json":
        app.json({"host": remote.host.name, "current": current, "previous": previous})
        return
    app.success(f"{remote.host.name}: now serving bundle {current[:12]} (was {previous[:12]})")
