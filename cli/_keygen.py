"""The signing-key options and creation shared by `repo keygen` and `bundle keygen`.

One site key signs bundle manifests and the apt repositories inside them, so both commands
make the same kind of key with the same defaults (an expiry: docs/security.md, item 22).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from gpuprov.cli.app import App


def keygen_options(*, home_help: str, name_example: str, export_help: str) -> Callable[[Any], Any]:
    """The options of a keygen command, in the order --help lists them."""
    options = [
        click.option("--home", required=True, type=click.Path(path_type=Path), help=home_help),
        click.option("--name", required=True, help=f"Key owner name, e.g. '{name_example}'."),
        click.option("--email", required=True, help="Key owner e-mail."),
        click.option(
            "--algorithm",
            type=click.Choice(["ed25519", "rsa3072"]),
            default="ed25519",
            show_default=True,
        ),
        click.option(
            "--expire",
            default="2y",
            show_default=True,
            help="gpg expiry: 2y, 18m, 2027-12-31; 0 (never) is not advised. "
            "Renew: repo extend-key.",
        ),
        click.option(
            "--passphrase-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Protect the key with this file's first line (default: unprotected).",
        ),
        click.option("--export", "export_to", type=click.Path(path_type=Path), help=export_help),
    ]

    def apply(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def create_key(
    app: App,
    *,
    what: str,
    home: Path,
    name: str,
    email: str,
    algorithm: str,
    expire: str,
    passphrase_file: Path | None,
    export_to: Path | None,
) -> None:
    """Generate the key, export its public keyring if asked, and say what was made."""
    from gpuprov.aptrepo import generate_key

    key = generate_key(
        home, name, email, algorithm=algorithm, expire=expire, passphrase_file=passphrase_file
    )
    if export_to:
        key.export_public(export_to)
    until = f"expires {key.expires:%Y-%m-%d}" if key.expires else "never expires"
    app.success(f"created {algorithm} {what} {key.fingerprint} ({key.uid}) in {home}, {until}")
