"""`gpuprov rollout status INVENTORY`: the state of the latest (or a given) rollout."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import INVENTORY, OUTPUT, STATE
from gpuprov.cli.app import App
from gpuprov.cli.rollout._common import fmt_time, open_store

from gpuprov.errors import ExitCode


@click.command()
@INVENTORY
@click.option(
    "--id",
    "rollout_id",
    type=int,
    default=None,
    help="A rollout id from `history` (default: latest).",
)
@OUTPUT
@STATE
@click.pass_obj
def status(
    app: App, inventory: Path, rollout_id: int | None, output: str, state: Path | None
) -> None:
    """Show a rollout's waves and every host's status, step and error."""
    store = open_store(app, inventory, state)
    if rollout_id is None:
        latest = store.latest()
        if latest is None:
            app.abort(f"no rollout of {inventory} recorded in {store.path}", ExitCode.BAD_INPUT)
        rollout_id = latest.id
    st = store.status(rollout_id)
    if st is None:
        app.abort(f"no rollout {rollout_id} in {store.path}", ExitCode.BAD_INPUT)
    if output == "json":
        app.json(st.to_dict())
        return
    r = st.rollout
    state_word = r.status
    if r.status == "running":
        holder = store.lock().holder()
        # A "running" rollout whose process is gone was killed: it is resumable.
        state_word = f"running ({holder})" if holder else "stopped (its process died; resumable)"
    app.info(
        f"rollout {r.id}: {state_word}" + (f" ({r.reason})" if r.reason else "")
        + f", started {fmt_time(r.started)}" + (f", finished {fmt_time(r.finished)}" if r.finished else "")
    )  # fmt: skip
    app.table(
        ["wave", "status", "failed", "allowed", "started", "finished"],
        [
            (w.name, w.status, w.failures, w.allowed, fmt_time(w.started), fmt_time(w.finished))
            for w in st.waves
        ],
    )
    names = {w.index: w.name for w in st.waves}
    app.table(
        ["host", "wave", "status", "step", "tries", "error"],
        [
            (h.host, names.get(h.wave, "") if h.wave is not None else "", h.status, h.step, h.attempts,
             (h.error or "").strip().splitlines()[-1] if h.error and h.error.strip() else "")
            for h in st.hosts
        ],
    )  # fmt: skip
    if r.status in ("interrupted", "halted", "running"):
        app.info(
            f"resumable: `gpuprov apply {inventory} --resume` continues it without re-running done hosts"
        )
