"""`gpuprov plan INVENTORY`: what `apply` would change on each host; changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from gpuprov.cli._options import ACCEPT_NEW, INVENTORY, LIMIT, OUTPUT
from gpuprov.cli._steps import ONLY, SKIP
from gpuprov.cli.app import App

if TYPE_CHECKING:
    from gpuprov.engine.plan import Plan
    from gpuprov.rollout.planner import RolloutPlan


def show_plan(app: App, plan: Plan) -> None:
    ignorable = False
    for name, host in plan.hosts.items():
        if host.status == "unreachable":
            continue  # already printed, one line, when connecting
        ignorable = ignorable or any(r.code for r in host.refusals)
        if len(host.refusals) > 1:
            app.error(f"{name}: refused: {len(host.refusals)} problems, most fundamental first")
            for refusal in host.refusals:
                app.error(f"  {refusal}")
        elif not host.ready:
            app.error(f"{name}: {host.status}: {host.refusals[0] if host.refusals else host.error}")
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
    if ignorable:
        app.info(
            "To accept a problem you know about, list its [code] in the host's "
            "gpuprov_preflight_ignore (docs/deploys.md)."
        )


def nothing_would_change(plan: Plan, up_to_date: int = 0) -> str:
    """One line for a run with no host to change: "nothing would change: 3 hosts refused,
    1 unreachable" (and how many were up to date, when some were)."""
    counts = plan.blocked_counts()
    parts = [(counts[s], s) for s in ("refused", "unreachable", "failed") if counts.get(s)]
    if up_to_date:
        parts.append((up_to_date, "up to date"))
    words = [f"{n} {what}" for n, what in parts]
    if parts:
        n, what = parts[0]
        words[0] = f"{n} host{'' if n == 1 else 's'} {what}"
    return "nothing would change: " + ", ".join(words)


def plan_exit_code(plan: Plan) -> int:
    from gpuprov.cli._options import exit_code

    unreachable = sum(1 for h in plan.blocked if h.status == "unreachable")
    return exit_code(unreachable, len(plan.blocked) - unreachable)


def excluded_exit_code(rplan: RolloutPlan) -> int:
    """A rollout that went well still fails when hosts were left out of it: 1 when one
    was refused (or its facts failed), 3 when they were only unreachable."""
    from gpuprov.cli._options import exit_code

    unreachable = sum(1 for s in rplan.excluded.values() if s == "unreachable")
    return exit_code(unreachable, len(rplan.excluded) - unreachable)


@click.command()
@INVENTORY
@LIMIT
@OUTPUT
@ACCEPT_NEW
@ONLY
@SKIP
@click.pass_obj
def plan(
    app: App,
    inventory: Path,
    limit: tuple[str, ...],
    output: str,
    accept_new: bool,
    only: tuple[str, ...],
    skip: tuple[str, ...],
) -> None:
    """Show what `apply` would change on each host (a dry run: nothing is changed)."""
    from gpuprov.cli._options import load, open_session, static_checks
    from gpuprov.cli._steps import selection
    from gpuprov.deploys.playbook import default_deploys

    from gpuprov.engine.plan import prepare

    steps = selection(app, only, skip)
    cluster, hosts = load(app, inventory, limit)
    static_checks(app, cluster)
    from gpuprov.inventory.mirrors import mirror_choices

    mirrors = mirror_choices(cluster, hosts)
    if output != "json":  # from the inventory alone: shown even when hosts are unreachable
        for name, choice in mirrors.items():
            app.info(f"{name}: mirror {choice.mirror.name} ({choice.reason})")
    with open_session(app, cluster, hosts, accept_new) as session:
        result = prepare(session, default_deploys(steps))
    if output == "json":
        app.json(
            result.to_dict()
            | {
                "mirrors": {
                    n: {"mirror": c.mirror.name, "why": c.reason} for n, c in mirrors.items()
                }
            }
        )
    else:
        show_plan(app, result)
    code = plan_exit_code(result)
    if code:
        app.abort(None, code)
