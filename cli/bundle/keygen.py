"""`gpuprov bundle keygen`: create the site's bundle signing key."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._keygen import create_key, keygen_options
from gpuprov.cli.app import App


@click.command()
@keygen_options(
    home_help="GnuPG home for the key (created, mode 0700). Keep it on the connected side only.",
    name_example="Site bundles",
    export_help="Also write the public keyring (binary) here: the far side's --keyring.",
)
@click.pass_obj
def keygen(app: App, export_to: Path | None, **key: object) -> None:
    """Create the site's bundle signing key in GnuPG home HOME.

    The same key signs bundle manifests and the apt repositories inside bundles. Carry
    the public keyring (--export) to the far side once, through your own trusted
    channel: it is what `gpuprov bundle verify --keyring` trusts.
    """
    create_key(app, what="bundle key", export_to=export_to, **key)  # type: ignore[arg-type]
    if export_to:
        app.info(f"public keyring for the far side (--keyring): {export_to}")
