"""`gpuprov rollout history INVENTORY`: every rollout of an inventory, oldest first."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import INVENTORY, OUTPUT, STATE
from gpuprov.cli.app import App
from gpuprov.cli.rollout._common import fmt_time, open_store


@click.command()
@INVENTORY
@OUTPUT
@STATE
@click.pass_obj
def history(app: App, inventory: Path, output: str, state: Path | None) -> None:
    """List the rollouts recorded for INVENTORY."""
    from gpuprov.rollout.state import inventory_hash

    store = open_store(app, inventory, state)
    records = store.history()
    if output == "json":
        app.json([{k: v for k, v in r.to_dict().items() if k != "plan"} for r in records])
        return
    current = inventory_hash(store.inventory)
    rows = []
    for r in records:
        st = store.status(r.id)
        done = sum(h.status == "done" for h in st.hosts)
        failed = sum(h.status == "failed" for h in st.hosts)
        changed = "" if r.inventory_hash == current else "changed since"
        rows.append(
            (
                r.id,
                r.status,
                fmt_time(r.started),
                fmt_time(r.finished),
                done,
                failed,
                r.reason or "",
                changed,
            )
        )
    app.table(
        ["id", "status", "started", "finished", "done", "failed", "reason", "inventory"], rows
    )
