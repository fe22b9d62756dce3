"""`gpuprov apply INVENTORY`: converge the hosts, GPU hosts as a staged rollout.

0. (Not for --dry-run) an unfinished earlier rollout must be resumed or abandoned first;
   the state DB is opened and the rollout lock taken before the first change of any
   kind (after the dry run), held to the end; nothing to change: no state written.
1. A dry run of the deploys on every selected host (one State, one round trip per host
   for a converged host): nothing to change anywhere -> "up to date", exit 0, no state.
2. Infrastructure hosts (mirror, controller) with changes are applied first, directly,
   from that same dry run; if one fails, no GPU host is touched.
3. GPU hosts with changes: a staged rollout (docs/rollouts.md): canary, waves bounded by
   failure domain, drain -> deploy (one fresh State per wave) -> health gates -> undrain,
   `max_fail` per wave, every transition in the state file. Always staged, even for one
   host: drain and gates must not depend on how many hosts are selected.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from gpuprov.cli._options import ACCEPT_NEW, INVENTORY, LIMIT, OUTPUT, STATE, TIMINGS
from gpuprov.cli._steps import ONLY, SKIP
from gpuprov.cli.app import App

from gpuprov.errors import ExitCode


@click.command()
@INVENTORY
@LIMIT
@OUTPUT
@ACCEPT_NEW
@click.option("--yes", "-y", is_flag=True, help="Do not ask: no confirmation, no wave approvals.")
@click.option(
    "--dry-run", is_flag=True, help="Show the changes and the waves; change nothing, no state."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the latest interrupted or halted rollout of INVENTORY (its stored plan).",
)
@click.option(
    "--abandon",
    is_flag=True,
    help="Abandon the interrupted or halted rollout of INVENTORY instead of resuming it: "
    "undrain its hosts whose gates passed, list what stays drained, then apply.",
)
@STATE
@ONLY
@SKIP
@TIMINGS
@click.pass_obj
def apply(
    app: App,
    inventory: Path,
    limit: tuple[str, ...],
    output: str,
    accept_new: bool,
    yes: bool,
    dry_run: bool,
    resume: bool,
    abandon: bool,
    state: Path | None,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    timings: bool,
) -> None:
    """Apply the deploys: infrastructure hosts first, then GPU hosts in a staged rollout.

    \b
    Examples:
      gpuprov apply inventories/lab.yaml --dry-run
      gpuprov apply inventories/lab.yaml --yes --output json
      gpuprov apply inventories/lab.yaml --resume --yes
      gpuprov apply inventories/lab.yaml --abandon --yes
      gpuprov apply inventories/prod.yaml --only cuda      # a CUDA-only rollout

    --only/--skip select runbook steps (preflight always runs); a resumed rollout runs
    the steps it started with.
    """
    from gpuprov.cli._options import load, static_checks
    from gpuprov.cli._steps import selection
    from gpuprov.cli._timings import report, show_timings
    from gpuprov.cli.apply.staged import Staged

    from gpuprov.engine.timings import mark

    mark("cli")
    if resume and (limit or dry_run):
        app.abort(
            "--resume continues the stored plan: it takes no --limit or --dry-run",
            ExitCode.BAD_INPUT,
        )
    if abandon and (resume or dry_run):
        app.abort(
            "--abandon ends the unfinished rollout: it takes no --resume or --dry-run",
            ExitCode.BAD_INPUT,
        )
    if not yes and not dry_run and not sys.stdin.isatty():
        app.abort("not a terminal: pass --yes to apply without confirmation", ExitCode.BAD_INPUT)
    steps = selection(app, only, skip)
    cluster, hosts = load(app, inventory, () if resume else limit)
    static_checks(app, cluster)
    mark("inventory")
    run = Staged(app, cluster, inventory, state, output=output, yes=yes, accept_new=accept_new)
    run.steps = steps
    run.timings = timings
    code = run.resume() if resume else run.apply(hosts, dry_run=dry_run, abandon=abandon)
    mark("changes, disconnect")
    if timings and output != "json":
        show_timings(app, report())
    if code:
        app.abort(None, code)
