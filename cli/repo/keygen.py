"""`gpuprov repo keygen`: create a repository signing key in a private GnuPG home."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._keygen import create_key, keygen_options
from gpuprov.cli.app import App


@click.command()
@keygen_options(
    home_help="GnuPG home for the key (created, mode 0700).",
    name_example="Lab mirror",
    export_help="Also write the public keyring (binary, for Signed-By) here.",
)
@click.pass_obj
def keygen(app: App, export_to: Path | None, **key: object) -> None:
    """Create a signing key for apt repositories in GnuPG home HOME."""
    create_key(app, what="key", export_to=export_to, **key)  # type: ignore[arg-type]
    if export_to:
        app.info(f"public keyring for Signed-By: {export_to}")
