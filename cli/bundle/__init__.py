"""`gpuprov bundle`: air-gapped bundles (build, export to media, verify, import)."""

from __future__ import annotations

import importlib.util

import click
from gpuprov.cli import LazyGroup

SUBCOMMANDS = {
    "build": "bundle.build:build",
    "export": "bundle.export:export",
    "import": "bundle.import_:import_",
    "keygen": "bundle.keygen:keygen",
    "rollback": "bundle.rollback:rollback",
    "verify": "bundle.verify:verify",
}


class _BundleGroup(LazyGroup):
    """Lists only the subcommands whose module is installed: `build` comes from another
    branch of work, and --help must not break while it is absent."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [
            name
            for name in super().list_commands(ctx)
            if name not in self.lazy
            or importlib.util.find_spec(f"gpuprov.cli.{self.lazy[name].split(':')[0]}")
        ]


@click.group(cls=_BundleGroup, lazy=SUBCOMMANDS)
def bundle() -> None:
    """Carry everything a rollout needs across an air gap (docs/bundles.md).

    \b
    Examples:
      gpuprov bundle keygen --home /srv/keys/bundle --name "Site bundles" \\
          --email ops@example.com --export bundle.gpg
      gpuprov bundle build inventories/site.yaml -o /data/bundle
      gpuprov bundle export /data/bundle --to /media/usb
      gpuprov bundle verify /media/usb --keyring /etc/gpuprov/bundle.gpg
      gpuprov bundle import /media/usb inventories/site.yaml --keyring /etc/gpuprov/bundle.gpg
      gpuprov bundle rollback inventories/site.yaml
    """
