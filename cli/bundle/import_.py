"""`gpuprov bundle import`: verify a bundle, put it on the mirror host, switch to it."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import INVENTORY, OUTPUT
from gpuprov.cli.app import App


@click.command("import")
@click.argument("media", type=click.Path(path_type=Path))
@INVENTORY
@click.option(
    "--keyring",
    required=True,
    type=click.Path(path_type=Path),
    help="The site's bundle public key (binary or armored).",
)
@click.option(
    "--root",
    default="/srv/gpuprov",
    show_default=True,
    help="Content root on the mirror host (bundles/<id>, current, previous).",
)
@click.option("--threads", type=click.IntRange(1, 64), help="Files hashed at once when verifying.")
@OUTPUT
@click.pass_obj
def import_(
    app: App,
    media: Path,
    inventory: Path,
    keyring: Path,
    root: str,
    threads: int | None,
    output: str,
) -> None:
    """Verify the bundle at MEDIA and import it onto INVENTORY's mirror host.

    Refuses a damaged or untrusted bundle, and a differential bundle whose base is not
    what the mirror serves now. The bundle streams (one tar stream over one SSH
    channel) into ROOT/bundles/<id>/, is checked again there with sha256sum, and only
    then ROOT/current is switched to it, atomically. The bundle it replaces stays for
    `gpuprov bundle rollback`.

    \b
    Examples:
      gpuprov bundle import /media/usb inventories/site.yaml --keyring /etc/gpuprov/bundle.gpg
    """
    from gpuprov.bundle.importer import BundleRefused, import_bundle
    from gpuprov.bundle.remote import Remote
    from gpuprov.inventory.loader import load_inventory

    remote = Remote.mirror_of(load_inventory(inventory))
    try:
        result = import_bundle(media, remote, keyring, root=root, threads=threads)
    except BundleRefused as exc:
        if output == "json":
            findings = [{"name": f.name, "message": f.message} for f in exc.findings]
            app.json({"ok": False, "error": str(exc), "findings": findings})
        else:
            for finding in exc.findings:
                app.error(str(finding))
        app.abort(f"refused: {exc}", exc.exit_code)
    if output == "json":
        app.json({"ok": True, **result.as_dict()})
        return
    was = result.previous[:12] if result.previous else "nothing"
    app.success(
        f"imported bundle {result.bundle[:12]} onto {result.host}:{root}: {result.files} files "
        f"({result.reused_from_base} kept from the base), {result.bytes_sent:,} bytes sent "
        f"in {result.seconds} s; current was {was}"
    )
