"""`gpuprov inventory show INVENTORY`: the resolved per-host values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from gpuprov.cli._options import INVENTORY, LIMIT, OUTPUT
from gpuprov.cli.app import App


@click.command()
@INVENTORY
@OUTPUT
@LIMIT
@click.pass_obj
def show(app: App, inventory: Path, output: str, limit: tuple[str, ...]) -> None:
    """Show every host with its values resolved (cluster < group < host).

    Secrets are never in the inventory, so never shown; only the name of the environment
    variable that holds the sudo password is.
    """
    from gpuprov.cli._options import load

    from gpuprov.checks import resolve_modules
    from gpuprov.tables import TableError, get_profile

    cluster, hosts = load(app, inventory, limit)
    rows: list[dict[str, Any]] = []
    for h in hosts:
        s = h.stack
        modules = None
        if s is not None:
            try:
                profile = get_profile(h.profile) if h.profile else None
            except TableError:
                profile = None
            modules = resolve_modules(s, profile)
        rows.append(
            {
                "name": h.name,
                "address": h.address,
                "role": h.role,
                "group": h.group,
                "profile": h.profile,
                "domains": h.domains,
                "ssh": {
                    "user": h.ssh.user,
                    "port": h.ssh.port,
                    "key": str(h.ssh.key) if h.ssh.key else None,
                    "known_hosts": str(h.ssh.known_hosts),
                    "sudo": h.ssh.sudo,
                    "sudo_password_env": h.ssh.sudo_password_env,
                    "connect_timeout": h.ssh.connect_timeout,
                },
                "stack": None
                if s is None
                else {
                    "os": s.os,
                    "driver": {
                        "branch": s.driver.branch,
                        "version": s.driver.version,
                        "modules": s.driver.modules,
                        "resolved_modules": modules,
                    },  # fmt: skip
                    "cuda": list(s.cuda),
                    "cuda_default": s.cuda_default,
                    "container_runtime": s.container_runtime,
                    "dcgm": s.dcgm,
                },
                "vars": h.vars,
            }
        )
    if output == "json":
        for row, h in zip(rows, hosts, strict=True):
            row["location"] = str(h.location)
        app.json({"cluster": cluster.name, "hosts": rows})
        return
    for line in range_lines(hosts):
        app.info(line)
    cols = [
        "host",
        "address",
        "role",
        "group",
        "profile",
        "domains",
        "driver",
        "cuda",
        "runtime",
        "ssh",
    ]
    table = []
    for r in rows:
        s = r["stack"]
        table.append([
            r["name"], r["address"], r["role"], r["group"], r["profile"],
            ",".join(f"{k}={v}" for k, v in r["domains"].items()),
            f"{s['driver']['version']} ({s['driver']['resolved_modules']})" if s else "",
            " ".join(s["cuda"]) if s else "",
            s["container_runtime"] if s else "",
            f"{r['ssh']['user']}:{r['ssh']['port']}" + (" sudo" if r["ssh"]["sudo"] else ""),
        ])  # fmt: skip
    app.table(cols, table, title=f"{cluster.name}: {len(rows)} host(s)")


def range_lines(hosts: list) -> list[str]:
    """One line per host range (`gpu[001:128]:`): the hosts it expanded to, their
    addresses and racks. A range's hosts share the location of its line."""
    by_loc: dict[str, list] = {}
    for h in hosts:
        by_loc.setdefault(str(h.location), []).append(h)
    out = []
    for loc, members in by_loc.items():
        if len(members) < 2:
            continue
        racks = list(dict.fromkeys(h.rack for h in members if h.rack))
        out.append(
            f"{loc}: range of {len(members)} hosts: {members[0].name} .. {members[-1].name}, "
            f"addresses {members[0].address} .. {members[-1].address}"
            + (f", racks {', '.join(racks)}" if racks else "")
        )
    return out
