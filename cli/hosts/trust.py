"""`gpuprov hosts trust INVENTORY`: fetch host keys, show fingerprints, record them."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from gpuprov.cli._options import INVENTORY, LIMIT, OUTPUT
from gpuprov.cli.app import App

from gpuprov.errors import ExitCode


@click.command()
@INVENTORY
@LIMIT
@click.option("--yes", "-y", is_flag=True, help="Record new keys without asking.")
@click.option(
    "--replace", is_flag=True, help="Replace keys that CHANGED (only after a known reinstall)."
)
@OUTPUT
@click.pass_obj
def trust(
    app: App, inventory: Path, limit: tuple[str, ...], yes: bool, replace: bool, output: str
) -> None:
    """Record the hosts' SSH keys in the inventory's known_hosts file.

    Shows each key's SHA256 fingerprint (compare with `ssh-keygen -lf` on the host's
    console) and asks before writing. A key that differs from the recorded one is
    reported and kept unless --replace is given.
    """
    from gpuprov.cli._options import exit_code, load

    from gpuprov.engine.known_hosts import record, scan

    cluster, hosts = load(app, inventory, limit)
    path = cluster.known_hosts_path
    keys = scan(hosts, path)
    rows = [
        (k.host, k.entry, k.key_type or "-", k.fingerprint or "-", k.status)
        for k in keys
        if not k.error
    ]
    if rows and output == "table":
        app.table(("host", "address", "type", "fingerprint", "status"), rows)
    for k in keys:
        if k.error:
            app.error(f"{k.host} ({k.entry}): {k.error}")
        elif k.status == "changed":
            app.error(
                f"{k.host} ({k.entry}): HOST KEY CHANGED — recorded {k.recorded_type} "
                f"{k.recorded_fingerprint}, host now offers {k.key_type} {k.fingerprint} (a key "
                "of another type counts as a change). Possible man-in-the-middle; "
                + (
                    "replacing (--replace)."
                    if replace
                    else "NOT replaced (rerun with --replace only if the host was reinstalled)."
                )
            )
    todo = [k for k in keys if k.status == "new" or (replace and k.status == "changed")]
    if todo and not yes:
        if not sys.stdin.isatty():
            app.abort("not a terminal: pass --yes to record the keys", ExitCode.BAD_INPUT)
        if not click.confirm(f"Record {len(todo)} key(s) in {path}?", err=True):
            app.abort("nothing recorded", ExitCode.INTERRUPTED)
    written = record(path, todo, replace=replace) if todo else 0
    if output == "json":
        app.json(
            {
                "known_hosts": str(path),
                "recorded": written,
                "hosts": [
                    {"host": k.host, "address": k.entry, "type": k.key_type,
                     "fingerprint": k.fingerprint, "status": k.status, "error": k.error}
                    for k in keys
                ],
            }
        )  # fmt: skip
    elif todo:
        app.success(f"recorded {written} key(s) in {path}")
    elif not any(k.error for k in keys):
        app.success(f"all {len(keys)} host key(s) already in {path}")
    unreachable = sum(1 for k in keys if k.error)
    changed = sum(1 for k in keys if k.status == "changed" and not replace)
    code = exit_code(unreachable, changed)
    if code:
        app.abort(None, code)
