"""`gpuprov rollout`: inspect staged rollouts (the plan, a rollout's state, the history)."""

from __future__ import annotations

import click
from gpuprov.cli import LazyGroup

# name -> "module:attribute" relative to gpuprov.cli; one module per command.
COMMANDS = {
    "plan": "rollout.plan:plan",
    "status": "rollout.status:status",
    "history": "rollout.history:history",
}


@click.group(cls=LazyGroup, lazy=COMMANDS)
def rollout() -> None:
    """Staged rollouts: canary, waves bounded by failure domain, resumable state.

    \b
    Examples:
      gpuprov rollout plan inventories/prod.yaml
      gpuprov rollout plan inventories/prod.yaml --output json
      gpuprov rollout status inventories/prod.yaml
      gpuprov rollout history inventories/prod.yaml
    """
