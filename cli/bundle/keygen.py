"""`gpuprov bundle keygen`: create the site's bundle signing key."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli.app import App


@click.command()
@click.option(
    "--home",
    required=True,
    type=click.Path(path_type=Path),
    help="GnuPG home for the key (created, mode 0700). Keep it on the connected side only.",
)
@click.option("--name", required=True, help="Key owner name, e.g. 'Site bundles'.")
@click.option("--email", required=True, help="Key owner e-mail.")
@click.option(
    "--algorithm", type=click.Choice(["ed25519", "rsa3072"]), default="ed25519", show_default=True
)
@click.option(
    "--expire", default="0", show_default=True, help="gpg expiry: 0 (never), 2y, 2027-12-31."
)
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Protect the key with this file's first line (default: unprotected).",
)
@click.option(
    "--export",
    "export_to",
    type=click.Path(path_type=Path),
    help="Also write the public keyring (binary) here: the far side's --keyring.",
)
@click.pass_obj
def keygen(
    app: App,
    home: Path,
    name: str,
    email: str,
    algorithm: str,
    expire: str,
    passphrase_file: Path | None,
    export_to: Path | None,
) -> None:
    """Create the site's bundle signing key in GnuPG home HOME.

    The same key signs bundle manifests and the apt repositories inside bundles. Carry
    the public keyring (--export) to the far side once, through your own trusted
    channel: it is what `gpuprov bundle verify --keyring` trusts.
    """
    from gpuprov.aptrepo import generate_key

    key = generate_key(
        home, name, email, algorithm=algorithm, expire=expire, passphrase_file=passphrase_file
    )
    if export_to:
        key.export_public(export_to)
    app.success(f"created {algorithm} bundle key {key.fingerprint} ({key.uid}) in {home}")
    if export_to:
        app.info(f"public keyring for the far side (--keyring): {export_to}")
