"""`gpuprov repo publish`: build a signed apt repository from a folder of .debs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
from gpuprov.cli._options import OUTPUT
from gpuprov.cli.app import App


@click.command()
@click.argument("debs_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--to",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Repository root (replaced atomically).",
)
@click.option("--suite", required=True, help="Suite name, e.g. bookworm or stable.")
@click.option(
    "--key-home",
    required=True,
    type=click.Path(path_type=Path),
    help="GnuPG home holding the signing key.",
)
@click.option("--key", "fingerprint", help="Fingerprint of the key, when the home holds several.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--component", default="main", show_default=True)
@click.option(
    "--arch",
    "archs",
    multiple=True,
    default=("amd64", "all"),
    show_default=True,
    help="Repeat for several.",
)
@click.option("--origin", default="gpuprov", show_default=True)
@click.option("--label", help="Release Label (default: the origin).")
@click.option(
    "--valid-days",
    type=click.IntRange(min=0),
    default=90,
    show_default=True,
    help="Valid-Until this many days after Date (0: none; apt then accepts a replayed "
    "old Release forever). Publish again before it passes.",
)
@click.option(
    "--export-key", type=click.Path(path_type=Path), help="Also write the public keyring here."
)
@OUTPUT
@click.pass_obj
def publish(
    app: App,
    debs_dir: Path,
    out: Path,
    suite: str,
    key_home: Path,
    fingerprint: str | None,
    passphrase_file: Path | None,
    component: str,
    archs: tuple[str, ...],
    origin: str,
    label: str | None,
    valid_days: int,
    export_key: Path | None,
    output: str,
) -> None:
    """Publish every .deb under DEBS_DIR as a signed repository at --to."""
    from gpuprov.aptrepo import load_key, publish_repo
    from gpuprov.errors import ExitCode

    debs = sorted(p for p in debs_dir.rglob("*.deb") if p.is_file())
    if not debs:
        app.abort(f"{debs_dir}: no .deb files found", ExitCode.BAD_INPUT)
    key = load_key(key_home, fingerprint, passphrase_file=passphrase_file)
    info = publish_repo(
        debs,
        out,
        suite=suite,
        key=key,
        components=(component,),
        architectures=archs,
        origin=origin,
        label=label,
        valid_for=timedelta(days=valid_days) if valid_days else None,
    )
    if export_key:
        key.export_public(export_key)
    if output == "json":
        app.json(
            {
                "out": str(info.out_dir),
                "suite": info.suite,
                "fingerprint": info.fingerprint,
                "date": info.date.isoformat(),
                "packages": [e.__dict__ for e in info.packages],
            }
        )
        return
    app.table(
        ["package", "version", "arch", "size"],
        [(e.package, e.version, e.architecture, e.size) for e in info.packages],
        title=f"{info.out_dir} {info.suite}",
    )
    app.success(f"published {len(info.packages)} packages, signed by {info.fingerprint}")
    if valid_days:
        app.info(f"valid until {info.date + timedelta(days=valid_days):%Y-%m-%d %H:%M} UTC")
