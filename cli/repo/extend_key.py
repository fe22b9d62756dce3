"""`gpuprov repo extend-key`: move the signing key's expiry, keeping the key."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli.app import App


@click.command("extend-key")
@click.option(
    "--home",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="GnuPG home holding the signing key.",
)
@click.option("--key", "fingerprint", help="Fingerprint of the key, when the home holds several.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--expire", default="2y", show_default=True, help="New expiry, from now (gpg syntax)."
)
@click.option(
    "--export",
    "export_to",
    required=True,
    type=click.Path(path_type=Path),
    help="Write the renewed public keyring here (what the inventory's mirror keyring names).",
)
@click.pass_obj
def extend_key(
    app: App,
    home: Path,
    fingerprint: str | None,
    passphrase_file: Path | None,
    expire: str,
    export_to: Path,
) -> None:
    """Extend the repository signing key in HOME; re-export its keyring.

    The fingerprint stays the same. Clients must get the re-exported keyring (the next
    `gpuprov apply` installs it) before their old copy expires: apt refuses a Release
    signed by a key its keyring says is expired.
    """
    from gpuprov.aptrepo import extend_key as extend
    from gpuprov.aptrepo import load_key

    key = extend(load_key(home, fingerprint, passphrase_file=passphrase_file), expire)
    key.export_public(export_to)
    until = f"{key.expires:%Y-%m-%d}" if key.expires else "never"
    app.success(f"key {key.fingerprint} now expires {until}; keyring written to {export_to}")
