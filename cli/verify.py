"""`gpuprov verify INVENTORY`: is every GPU node what the inventory says, right now?"""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import ACCEPT_NEW, INVENTORY, LIMIT, OUTPUT
from gpuprov.cli.app import App

from gpuprov.errors import ExitCode


@click.command()
@INVENTORY
@LIMIT
@OUTPUT
@ACCEPT_NEW
@click.pass_obj
def verify(
    app: App, inventory: Path, limit: tuple[str, ...], output: str, accept_new: bool
) -> None:
    """Check each GPU host: nvidia-smi runs, GPU count and model, pinned driver loaded,
    no uncorrectable ECC or pending row remaps, NVLink fabric up, fabric manager ==
    driver, CDI spec current, `dcgmi diag -r 1`, and a GPU container through CDI when the
    host has a test image (host var gpuprov_verify_image). Exit 1 when any host fails."""
    from gpuprov.cli._options import exit_code, load, open_session

    from gpuprov.engine.connect import quiet_pyinfra
    from gpuprov.engine.gather import gather
    from gpuprov.facts.host_state import HostState
    from gpuprov.verify.node import NodeReport, node_verdict, probe_hosts

    cluster, hosts = load(app, inventory, limit)
    gpu = [h for h in hosts if h.role == "gpu"]
    if not gpu:
        app.abort("no GPU host selected", ExitCode.BAD_INPUT)
    with open_session(app, cluster, gpu, accept_new) as session:
        states = gather(session, HostState)
        with quiet_pyinfra():
            probes = probe_hosts(session, {h.name: h for h in gpu})
    reports: dict[str, NodeReport] = {}
    errors: dict[str, str] = {}
    for h in gpu:
        st, probe = states.get(h.name), probes.get(h.name)
        if st is None or not st.ok or probe is None or isinstance(probe, str):
            if h.name in session.connected:
                why = st.error if st and not st.ok else probe if isinstance(probe, str) else None
                errors[h.name] = why or "no facts"
            continue
        reports[h.name] = node_verdict(h, st.data, probe)

    if output == "json":
        app.json(
            {
                "hosts": [r.as_dict() for r in reports.values()],
                "errors": errors,
                "unreachable": [r.host for r in session.failed],
                "ok": all(r.ok for r in reports.values()) and not errors and not session.failed,
            }
        )
    else:
        rows = []
        for name, r in reports.items():
            detail = r.verdict.summary()
            if r.not_checked:
                detail += "; not checked: " + "; ".join(f"{n} ({w})" for n, w in r.not_checked)
            rows.append((name, "ok" if r.ok else "FAILED", detail))
        rows += [(name, "ERROR", err) for name, err in errors.items()]
        app.table(("host", "result", "details"), rows)
    failed = sum(1 for r in reports.values() if not r.ok) + len(errors)
    code = exit_code(len(session.failed), failed)
    if code:
        app.abort(None, code)
