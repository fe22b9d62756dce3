"""`gpuprov lab capture facts|verify`: read-only self-inspection of this machine, as JSON
(scripts/gpu-capture.sh runs it on a lent GPU machine to keep real outputs as fixtures)."""

from __future__ import annotations

import click
from gpuprov.cli.app import App

from gpuprov.errors import ExitCode


@click.command()
@click.argument("what", type=click.Choice(["facts", "verify"]), default="facts")
@click.pass_obj
def capture(app: App, what: str) -> None:
    """Run the HostState script here (/bin/sh) and print it parsed; `verify` adds the
    verdict against the system profile matching the GPUs nvidia-smi reports. Exit 1 when
    the verdict fails or no profile matches. Changes nothing."""
    from gpuprov.capture import local_host_state, local_verdict, to_jsonable

    state = local_host_state()
    if what == "facts":
        app.json(to_jsonable(state))
        return
    result = local_verdict(state)
    app.json(result)
    if not result.get("ok"):
        app.abort(None, ExitCode.HOSTS_FAILED)
