"""`gpuprov mirror`: the offline model registry (docs/model-mirror.md)."""

from __future__ import annotations

import click
from gpuprov.cli import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy={
        "add-model": "mirror.add_model:add_model",
        "list": "mirror.list_repos:list_repos",
        "serve": "mirror.serve:serve",
    },
    epilog="""\b
Examples:
  gpuprov mirror add-model ./tiny-bert --store /srv/models --repo acme/tiny-bert
  gpuprov mirror add-model ~/.cache/huggingface/hub/models--org--name --store /srv/models --repo org/name
  gpuprov mirror list --store /srv/models --output json
  gpuprov mirror serve --store /srv/models --host 10.0.0.5 --port 8090 --token-file /etc/gpuprov/model-tokens.yaml""",
)
def mirror() -> None:
    """Offline Hugging Face Hub-compatible model registry."""
