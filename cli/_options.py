"""The options every command shares (declared once here) and the steps facts, plan,
apply, verify and hosts share: load the inventory, select hosts, run the static checks,
connect."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from gpuprov.cli._complete import limit_names

from gpuprov.errors import ExitCode

if TYPE_CHECKING:
    from gpuprov.cli.app import App

    from gpuprov.engine.connect import Session, SudoPasswords
    from gpuprov.inventory.model import Cluster, Host

INVENTORY = click.argument("inventory", type=click.Path(dir_okay=False, path_type=Path))
LIMIT = click.option(
    "--limit",
    "-l",
    "limit",
    multiple=True,
    metavar="HOSTS",
    shell_complete=limit_names,
    help="Only these hosts or groups (names or globs; comma-separated or repeated).",
)
OUTPUT = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format (a file to write is always --to FILE or an argument).",
)
STORE = click.option(
    "--store", required=True, type=click.Path(path_type=Path), help="Mirror store directory."
)
TIMINGS = click.option(
    "--timings",
    is_flag=True,
    help="Say where the time went (connect, the fact round trip, evaluation, output...): "
    'a table on stderr, or "timings" in the --output json document.',
)
STATE = click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="State database (default: INVENTORY.gpuprov-state.db beside the inventory).",
)


def load(app: App, inventory: Path, limit: tuple[str, ...]) -> tuple[Cluster, list[Host]]:
    from gpuprov.inventory.loader import load_inventory

    cluster = load_inventory(inventory)
    patterns = [p.strip() for item in limit for p in item.split(",") if p.strip()]
    hosts = cluster.select(patterns or None)
    if not hosts:
        app.abort(
            f"--limit {','.join(patterns)} matches no host in {inventory}", ExitCode.BAD_INPUT
        )
    return cluster, hosts


def static_checks(app: App, cluster: Cluster) -> None:
    """Fail in a second, before any SSH connection, when the plan cannot work."""
    from gpuprov.checks import static_checks as run_checks

    problems = run_checks(cluster)
    for problem in problems:
        (app.error if problem.severity == "error" else app.warning)(str(problem))
    if any(p.severity == "error" for p in problems):
        app.abort(None, ExitCode.BAD_INPUT)


def open_session(
    app: App,
    cluster: Cluster,
    hosts: list[Host],
    accept_new: bool,
    password: SudoPasswords | None = None,
) -> Session:
    from gpuprov.engine.connect import connect

    # prompt for a sudo password only on a terminal (and only if the env var is unset);
    # no host reachable raises ConnectError: one line per host, exit 3 (the root group)
    prompt = sys.stdin.isatty()
    session = connect(
        cluster, hosts, accept_new=accept_new, prompt_password=prompt, password=password
    )
    for failure in session.failed:
        app.error(failure.message)
    return session


def exit_code(connect_failures: int, other_failures: int) -> int:
    """3 when the only trouble was reaching hosts, 1 when any host failed otherwise."""
    if other_failures:
        return ExitCode.HOSTS_FAILED
    if connect_failures:
        return ExitCode.CONNECT_FAILED
    return ExitCode.OK


ACCEPT_NEW = click.option(
    "--accept-new-host-keys",
    "accept_new",
    is_flag=True,
    help="Trust and record keys of hosts not yet in known_hosts (changed keys still fail). "
    "Prefer `gpuprov hosts trust`, which shows the fingerprints first.",
)
