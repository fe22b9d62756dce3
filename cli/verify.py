"""`gpuprov verify INVENTORY`: is every GPU node and mirror host what the inventory says,
right now?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from gpuprov.cli._options import ACCEPT_NEW, INVENTORY, LIMIT, OUTPUT
from gpuprov.cli.app import App

from gpuprov.errors import ExitCode

if TYPE_CHECKING:
    from gpuprov.inventory.model import Cluster, Host
    from gpuprov.verify.node import NodeReport


@click.command()
@INVENTORY
@LIMIT
@OUTPUT
@ACCEPT_NEW
@click.option(
    "--bundle",
    type=click.Path(file_okay=False, path_type=Path),
    help="Mirror hosts: what they should serve, from this bundle directory (or mounted "
    "media) instead of the bundle each mirror host imported (read over SSH).",
)
@click.pass_obj
def verify(
    app: App,
    inventory: Path,
    limit: tuple[str, ...],
    output: str,
    accept_new: bool,
    bundle: Path | None,
) -> None:
    """Check each GPU host: nvidia-smi runs, GPU count and model, pinned driver loaded,
    no uncorrectable ECC or pending row remaps, NVLink fabric up, fabric manager ==
    driver, CDI spec current, `dcgmi diag -r 1`, and a GPU container through CDI when the
    host has a test image (host var gpuprov_verify_image). Check each mirror host's
    services from here, at its address: apt InRelease signed by the bundle key
    (cluster.mirror.keyring), the registry serving every image of the bundle by digest,
    the model registry serving every model of the bundle. Exit 1 when any host fails."""
    from gpuprov.cli._options import exit_code, load

    cluster, hosts = load(app, inventory, limit)
    gpu = [h for h in hosts if h.role == "gpu"]
    mirrors = [h for h in hosts if h.role == "mirror"]
    if not gpu and not mirrors:
        app.abort("no GPU or mirror host selected", ExitCode.BAD_INPUT)
    reports: dict[str, NodeReport] = {}
    errors: dict[str, str] = {}
    unreachable: list[str] = []
    if mirrors:
        _verify_mirrors(app, cluster, mirrors, bundle, accept_new, reports, errors, unreachable)
    if gpu:
        _verify_gpu_hosts(app, cluster, gpu, accept_new, reports, errors, unreachable)

    if output == "json":
        app.json(
            {
                "hosts": [r.as_dict() for r in reports.values()],
                "errors": errors,
                "unreachable": unreachable,
                "ok": all(r.ok for r in reports.values()) and not errors and not unreachable,
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
    code = exit_code(len(unreachable), failed)
    if code:
        app.abort(None, code)


def _verify_gpu_hosts(app, cluster, gpu, accept_new, reports, errors, unreachable) -> None:
    from gpuprov.cli._options import open_session

    from gpuprov.engine.connect import quiet_pyinfra
    from gpuprov.engine.gather import gather
    from gpuprov.facts.host_state import HostState
    from gpuprov.verify.node import node_verdict, probe_hosts

    with open_session(app, cluster, gpu, accept_new) as session:
        states = gather(session, HostState)
        with quiet_pyinfra():
            probes = probe_hosts(session, {h.name: h for h in gpu})
    for h in gpu:
        st, probe = states.get(h.name), probes.get(h.name)
        if st is None or not st.ok or probe is None or isinstance(probe, str):
            if h.name in session.connected:
                why = st.error if st and not st.ok else probe if isinstance(probe, str) else None
                errors[h.name] = why or "no facts"
            continue
        reports[h.name] = node_verdict(h, st.data, probe)
    unreachable += [r.host for r in session.failed]


def _verify_mirrors(
    app: App,
    cluster: Cluster,
    mirrors: list[Host],
    bundle: Path | None,
    accept_new: bool,
    reports: dict,
    errors: dict,
    unreachable: list,
) -> None:
    """Each mirror host's services, checked from here against what its bundle carries."""
    from gpuprov.bundle.catalog import CatalogError, parse_catalog, read_bundle_dir
    from gpuprov.inventory.model import MirrorRef
    from gpuprov.verify.mirror import mirror_verdict

    catalogs: dict[str, object] = {}
    serving: dict[str, str | None] = {}
    if bundle is not None:
        try:
            catalog = read_bundle_dir(bundle)
        except (CatalogError, OSError) as exc:
            app.abort(f"--bundle {bundle}: {exc}", ExitCode.BAD_INPUT)
        catalogs = {h.name: catalog for h in mirrors}
    else:
        from gpuprov.cli._options import open_session

        from gpuprov.engine.gather import gather
        from gpuprov.facts.served_bundle import CURRENT, ServedBundle

        with open_session(app, cluster, mirrors, accept_new) as session:
            served = gather(session, ServedBundle)
        unreachable += [r.host for r in session.failed]
        for h in mirrors:
            got = served.get(h.name)
            if got is None or h.name not in session.connected:
                continue
            if not got.ok:
                errors[h.name] = got.error or "could not read the served bundle"
            elif got.data["too_large"] or got.data["manifest"] is None:
                errors[h.name] = f"{CURRENT}/manifest.json: " + (
                    "too large" if got.data["too_large"] else "not found (import a bundle)"
                )
            else:
                try:
                    catalogs[h.name] = parse_catalog(got.data["manifest"], got.data.get("index"))
                    serving[h.name] = got.data.get("serving")
                except CatalogError as exc:
                    errors[h.name] = f"{CURRENT}/{exc}"
    for h in mirrors:
        if h.name in catalogs:
            ref = cluster.mirror or MirrorRef(h.name)
            reports[h.name] = mirror_verdict(
                h,
                ref,
                catalogs[h.name],  # type: ignore[arg-type]
                check_served=bundle is None,
                serving=serving.get(h.name),
            )
