"""What the rollout commands that read the state file share."""

from __future__ import annotations

from pathlib import Path

from gpuprov.errors import ExitCode


def fmt_time(stamp: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else ""


def open_store(app, inventory: Path, state: Path | None):
    """The store for INVENTORY, or a clear error when no rollout has run yet."""
    from gpuprov.rollout.state import StateStore, default_state_path

    path = state or default_state_path(inventory)
    if not path.exists():
        app.abort(
            f"no rollout state at {path} (no rollout of {inventory} has run yet)",
            ExitCode.BAD_INPUT,
        )
    return StateStore.for_inventory(inventory, path)
