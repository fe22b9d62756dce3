"""`gpuprov inventory check INVENTORY`: load, validate and run the static checks."""

from __future__ import annotations

import click
from gpuprov.cli._options import INVENTORY
from gpuprov.cli.app import App


@click.command()
@INVENTORY
@click.pass_obj
def check(app: App, inventory: str) -> None:
    """Validate INVENTORY and check its stack against the data tables; touches no host.

    Prints every problem as FILE:LINE:COL: severity: message and exits 2 if any is an
    error (warnings and notes do not fail).
    """
    from gpuprov.checks import static_checks
    from gpuprov.errors import ExitCode
    from gpuprov.inventory.loader import load_inventory

    cluster = load_inventory(inventory)
    findings = [*cluster.warnings, *static_checks(cluster)]
    errors = [p for p in findings if p.severity == "error"]
    if errors:
        for p in findings:
            app.error(str(p))
        app.abort(f"{len(errors)} error(s) in {inventory}", ExitCode.BAD_INPUT)
    for p in findings:
        app.warning(str(p))
    gpu = cluster.gpu_hosts()
    drv = cluster.stack.driver
    app.success(
        f"{inventory}: ok: cluster {cluster.name}, {len(cluster.hosts)} hosts "
        f"({len(gpu)} gpu) in {len(cluster.groups)} groups, driver {drv.version or '-'}"
        + (f", {len(findings)} note(s)/warning(s)" if findings else "")
    )
