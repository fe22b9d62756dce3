"""`gpuprov facts INVENTORY`: what each host is, read in one round trip per host."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from gpuprov.cli._options import ACCEPT_NEW, INVENTORY, LIMIT, OUTPUT
from gpuprov.cli.app import App

if TYPE_CHECKING:
    from gpuprov.facts.host_state import HostStateData

DRIVER_PACKAGES = ("nvidia-driver", "libnvidia-compute", "nvidia-kernel")


def summary(state: HostStateData) -> dict[str, Any]:
    """The operator's view of HostState (the JSON output; the table shows the same)."""
    gpus = state.pci_gpus
    models = Counter(d.name for d in gpus)
    installed = sorted(
        (p.name, p.version)
        for p in state.packages.values()
        if p.installed and p.name.startswith(DRIVER_PACKAGES)
    )
    return {
        "os": state.os.os_key if state.os else None,
        "os_name": state.os.pretty_name if state.os else None,
        "kernel": state.kernel,
        "headers_installed": state.headers_present,
        "secure_boot": state.secure_boot,
        "nouveau_loaded": state.nouveau_loaded,
        "lspci": state.pci_devices is not None,
        "gpu_count": len(gpus),
        "gpus": [{"model": m, "count": n} for m, n in models.items()],
        "gpu_pci": [{"slot": d.slot, "pci_id": d.pci_id, "name": d.name} for d in gpus],
        "nvswitch_count": len(state.pci_nvswitches),
        "driver_loaded": state.nvidia_module_version,
        "driver_installed": installed[0][1] if installed else None,
        "free_bytes": state.root_free_bytes,
        "problems": state.problems,
    }


def _row(name: str, f: dict[str, Any]) -> tuple[Any, ...]:
    sb = {True: "on", False: "off", None: "?"}[f["secure_boot"]]
    gpus = ", ".join(f"{g['count']}x {g['model']}" for g in f["gpus"]) or "-"
    free = "?" if f["free_bytes"] is None else f"{f['free_bytes'] / 1e9:.1f} GB"
    driver = f["driver_loaded"] or f["driver_installed"] or "-"
    headers = "yes" if f["headers_installed"] else "no"
    nouveau = "yes" if f["nouveau_loaded"] else "no"
    return (
        name,
        f["os"],
        f["kernel"],
        headers,
        sb,
        nouveau,
        gpus,
        f["nvswitch_count"],
        driver,
        free,
    )


@click.command()
@INVENTORY
@LIMIT
@OUTPUT
@ACCEPT_NEW
@click.pass_obj
def facts(app: App, inventory: Path, limit: tuple[str, ...], output: str, accept_new: bool) -> None:
    """Show each host's OS, kernel, headers, Secure Boot, nouveau, GPUs, NVSwitches,
    driver and free disk."""
    from gpuprov.cli._options import exit_code, load, open_session

    from gpuprov.engine.gather import gather
    from gpuprov.facts.host_state import HostState

    cluster, hosts = load(app, inventory, limit)
    with open_session(app, cluster, hosts, accept_new) as session:
        results = gather(session, HostState)
    fact_failed = [r for r in results.values() if not r.ok and r.host in session.connected]
    for r in fact_failed:
        app.error(f"{r.host}: could not read facts: {r.error}")
    views = {name: summary(r.data) for name, r in results.items() if r.ok}

    if output == "json":
        app.json(
            {
                name: ({"ok": True, **views[name]} if r.ok else {"ok": False, "error": r.error})
                for name, r in results.items()
            }
        )
    else:
        columns = ("host", "os", "kernel", "headers", "secure boot", "nouveau", "GPUs")
        app.table(
            (*columns, "NVSwitch", "driver", "free /"), [_row(n, v) for n, v in views.items()]
        )
    code = exit_code(len(session.failed), len(fact_failed))
    if code:
        app.abort(None, code)
