"""`gpuprov facts INVENTORY`: what each host is, read in one round trip per host."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._engine import ACCEPT_NEW, INVENTORY, LIMIT, OUTPUT
from gpuprov.cli.app import App


def _gb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e9:.1f} GB"


def _gpus(devices: list) -> str:
    from collections import Counter

    counts = Counter(d.name for d in devices)
    return ", ".join(f"{n}x {name}" for name, n in counts.items()) or "-"


@click.command()
@INVENTORY
@LIMIT
@OUTPUT
@ACCEPT_NEW
@click.pass_obj
def facts(app: App, inventory: Path, limit: tuple[str, ...], output: str, accept_new: bool) -> None:
    """Show each host's OS, kernel, headers, Secure Boot, nouveau, GPUs, NVSwitches,
    driver and free disk."""
    from gpuprov.cli._engine import exit_code, load, open_session
    from gpuprov.deploys.preflight_fact import PreflightFact

    from gpuprov.engine.gather import gather

    cluster, hosts = load(app, inventory, limit)
    with open_session(app, cluster, hosts, accept_new) as session:
        results = gather(session, PreflightFact)
    connect_failed = len(session.failed)
    fact_failed = [r for r in results.values() if not r.ok and r.host in session.connected]
    for r in fact_failed:
        app.error(f"{r.host}: could not read facts: {r.error}")

    if output == "json":
        app.json(
            {
                name: (
                    {"ok": True, **r.data.as_dict()} if r.ok else {"ok": False, "error": r.error}
                )
                for name, r in results.items()
            }
        )
    else:
        rows = []
        for name, r in results.items():
            if not r.ok:
                continue
            d = r.data
            sb = "on" if d.secure_boot else "off" if d.secure_boot is False else "?"
            headers = "yes" if d.headers_installed else "no"
            rows.append(
                (
                    name,
                    d.os_key,
                    d.kernel,
                    headers,
                    sb,
                    "yes" if d.nouveau_loaded else "no",
                    _gpus(d.gpus),
                    len(d.nvswitches),
                    d.driver_loaded or d.driver_installed or "-",
                    _gb(d.free_bytes),
                )
            )
        columns = ("host", "os", "kernel", "headers", "secure boot", "nouveau", "GPUs")
        app.table((*columns, "NVSwitch", "driver", "free /"), rows)
    code = exit_code(connect_failed, len(fact_failed))
    if code:
        app.abort(None, code)
