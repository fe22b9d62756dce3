"""`gpuprov apply INVENTORY`: converge the hosts (plan, confirm, run, summarize)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from gpuprov.cli._engine import ACCEPT_NEW, INVENTORY, LIMIT, OUTPUT
from gpuprov.cli.app import App

from gpuprov.errors import ExitCode

STYLE = {"changed": "yellow", "ok": "green", "failed": "red"}


@click.command()
@INVENTORY
@LIMIT
@OUTPUT
@ACCEPT_NEW
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--dry-run", is_flag=True, help="Change nothing: show the plan (same as `gpuprov plan`)."
)
@click.pass_context
def apply(
    ctx: click.Context,
    inventory: Path,
    limit: tuple[str, ...],
    output: str,
    accept_new: bool,
    yes: bool,
    dry_run: bool,
) -> None:
    """Apply the deploys to the hosts. Shows the plan and asks first unless --yes."""
    app: App = ctx.obj
    if dry_run:
        from gpuprov.cli.plan import plan

        ctx.invoke(plan, inventory=inventory, limit=limit, output=output, accept_new=accept_new)
        return
    from gpuprov.cli._engine import exit_code, load, open_session, static_checks
    from gpuprov.cli.plan import show_plan

    from gpuprov.engine.apply import execute
    from gpuprov.engine.plan import prepare
    from gpuprov.engine.playbook import default_deploys

    cluster, hosts = load(app, inventory, limit)
    static_checks(app, cluster)
    if not yes and not sys.stdin.isatty():
        app.abort("not a terminal: pass --yes to apply without confirmation", ExitCode.BAD_INPUT)
    with open_session(app, cluster, hosts, accept_new) as session:
        plan = prepare(session, default_deploys())
        if output != "json" or not yes:
            show_plan(app, plan)
        if not yes and plan.changes and not click.confirm("Apply these changes?", err=True):
            app.abort("nothing changed", ExitCode.INTERRUPTED)

        def progress(host: str, op: str, outcome: str) -> None:
            if output != "json" and outcome != "ok":
                app.out.print(f"{host}: {outcome}: {op}", style=STYLE[outcome], markup=False)

        if app.out.is_terminal and output != "json":
            with app.out.status("applying…"):
                result = execute(session, plan, progress)
        else:
            result = execute(session, plan, progress)

    if output == "json":
        app.json(result.to_dict())
    else:
        rows = [
            (h.name, h.status, h.changed, h.ok, h.failed, h.error or "")
            for h in result.hosts.values()
        ]
        app.table(("host", "status", "changed", "ok", "failed", "error"), rows)
        app.info(
            f"Applied: {result.changed} changes; "
            f"{len(result.hosts) - len(result.failed)} of {len(result.hosts)} hosts ok"
        )
    unreachable = sum(1 for h in result.failed if h.status == "unreachable")
    code = exit_code(unreachable, len(result.failed) - unreachable)
    if code:
        app.abort(None, code)
