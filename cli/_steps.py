"""`--only STEP[,STEP]` / `--skip STEP` for plan and apply (steps: deploys/steps.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from gpuprov.deploys.steps import ABOUT, STEPS

if TYPE_CHECKING:
    from gpuprov.cli.app import App
    from gpuprov.deploys.steps import StepSelection

_HELP = ", ".join(STEPS)


def _complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of step names, after the last comma of a list."""
    from click.shell_completion import CompletionItem

    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    return [CompletionItem(prefix + s, help=ABOUT[s]) for s in STEPS if s.startswith(last)]


ONLY = click.option(
    "--only",
    "only",
    multiple=True,
    metavar="STEP[,STEP]",
    shell_complete=_complete,
    help=f"Run only these runbook steps (preflight always runs): {_HELP}.",
)
SKIP = click.option(
    "--skip",
    "skip",
    multiple=True,
    metavar="STEP[,STEP]",
    shell_complete=_complete,
    help="Leave out these runbook steps.",
)


def selection(app: App, only: tuple[str, ...], skip: tuple[str, ...]) -> StepSelection:
    """The selection; an unknown step is an InputError (the root group prints it, exit 2)."""
    from gpuprov.deploys.steps import parse

    steps = parse(only, skip)
    if not steps.everything:  # on stderr: stdout may be --output json
        app.err.print(f"Steps: preflight, {', '.join(steps.steps)} ({steps.flag})", markup=False)
    return steps
