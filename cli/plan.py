"""`gpuprov plan INVENTORY`: what `apply` would change on each host; changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from gpuprov.cli._options import ACCEPT_NEW, INVENTORY, LIMIT, OUTPUT
from gpuprov.cli.app import App

if TYPE_CHECKING:
    from gpuprov.engine.plan import Plan


def show_plan(app: App, plan: Plan) -> None:
    for name, host in plan.hosts.items():
        if host.status == "unreachable":
            continue  # already printed, one line, when connecting
        if not host.ready:
            app.error(f"{name}: {host.status}: {host.error}")
        elif host.changes:
            app.info(f"{name}: {len(host.changes)} to change ({host.ops_total} operations)")
            for change in host.changes:
                detail = f"  ({change.description})" if change.description else ""
                app.info(f"  ~ {change.name}{detail}")
        else:
            app.success(f"{name}: up to date ({host.ops_total} operations)")
        for text in host.warnings:
            app.warning(f"{name}: warning: {text}")
    ready = len(plan.hosts) - len(plan.blocked)
    changing = sum(1 for h in plan.hosts.values() if h.changes)
    noun = "change" if plan.changes == 1 else "changes"
    summary = f"Plan: {plan.changes} {noun} on {changing} of {ready} ready hosts"
    if plan.blocked:
        summary += f"; {len(plan.blocked)} blocked"
    app.info(summary)


def plan_exit_code(plan: Plan) -> int:
    from gpuprov.cli._options import exit_code

    unreachable = sum(1 for h in plan.blocked if h.status == "unreachable")
    return exit_code(unreachable, len(plan.blocked) - unreachable)


@click.command()
@INVENTORY
@LIMIT
@OUTPUT
@ACCEPT_NEW
@click.pass_obj
def plan(app: App, inventory: Path, limit: tuple[str, ...], output: str, accept_new: bool) -> None:
    """Show what `apply` would change on each host (a dry run: nothing is changed)."""
    from gpuprov.cli._options import load, open_session, static_checks
    from gpuprov.deploys.playbook import default_deploys

    from gpuprov.engine.plan import prepare

    cluster, hosts = load(app, inventory, limit)
    static_checks(app, cluster)
    with open_session(app, cluster, hosts, accept_new) as session:
        result = prepare(session, default_deploys())
    if output == "json":
        app.json(result.to_dict())
    else:
        show_plan(app, result)
    code = plan_exit_code(result)
    if code:
        app.abort(None, code)
