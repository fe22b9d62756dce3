"""`gpuprov repo keygen`: create a repository signing key in a private GnuPG home."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli.app import App


@click.command()
@click.option(
    "--home",
    required=True,
    type=click.Path(path_type=Path),
    help="GnuPG home for the key (created, mode 0700).",
)
@click.option("--name", required=True, help="Key owner name, e.g. 'Lab mirror'.")
@click.option("--email", required=True, help="Key owner e-mail.")
@click.option(
    "--algorithm", type=click.Choice(["ed25519", "rsa3072"]), default="ed25519", show_default=True
)
@click.option(
    "--expire",
    default="2y",
    show_default=True,
    help="gpg expiry: 2y, 18m, 2027-12-31; 0 (never) is not advised. Renew: repo extend-key.",
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
    help="Also write the public keyring (binary, for Signed-By) here.",
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
    """Create a signing key for apt repositories in GnuPG home HOME."""
    from gpuprov.aptrepo import generate_key

    key = generate_key(
        home, name, email, algorithm=algorithm, expire=expire, passphrase_file=passphrase_file
    )
    if export_to:
        key.export_public(export_to)
    until = f"expires {key.expires:%Y-%m-%d}" if key.expires else "never expires"
    app.success(f"created {algorithm} key {key.fingerprint} ({key.uid}) in {home}, {until}")
    if export_to:
        app.info(f"public keyring for Signed-By: {export_to}")
