"""`gpuprov repo`: signed apt repositories (keys, publishing, verification)."""

from __future__ import annotations

import click
from gpuprov.cli import LazyGroup

SUBCOMMANDS = {
    "keygen": "repo.keygen:keygen",
    "extend-key": "repo.extend_key:extend_key",
    "publish": "repo.publish:publish",
    "verify": "repo.verify:verify",
}


@click.group(cls=LazyGroup, lazy=SUBCOMMANDS)
def repo() -> None:
    """Publish and check signed apt repositories (docs/apt-repo.md).

    \b
    Examples:
      gpuprov repo keygen --home /srv/keys/apt --name "Site mirror" --email ops@example.com \\
          --export /srv/apt/gpuprov.gpg
      gpuprov repo publish ./debs --to /srv/apt/bookworm --suite bookworm --key-home /srv/keys/apt
      gpuprov repo verify /srv/apt/bookworm --keyring /srv/apt/gpuprov.gpg
    """
