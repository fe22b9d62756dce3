"""`gpuprov bundle build`: assemble an air-gapped bundle on the connected machine."""

from __future__ import annotations

import os
from pathlib import Path

import click
from gpuprov.cli._options import OUTPUT
from gpuprov.cli.app import App


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpuprov" / "bundle"


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.command()
@click.argument("inventory", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--to",
    "out",
    type=click.Path(path_type=Path),
    help="The bundle directory to create (must not exist or be empty). Not with --dry-run.",
)
@click.option(
    "--since",
    type=click.Path(exists=True, path_type=Path),
    help="The previous bundle's manifest.json: write a differential bundle on that base.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print what would be fetched and its size; write no bundle."
)
@click.option(
    "--key-home",
    type=click.Path(path_type=Path),
    help="GnuPG home of the bundle key (gpuprov bundle keygen).",
)
@click.option("--key", "fingerprint", help="Fingerprint of the key, when the home holds several.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Download cache reused between builds [default: ~/.cache/gpuprov/bundle].",
)
@OUTPUT
@click.pass_obj
def build(
    app: App,
    inventory: Path,
    out: Path | None,
    since: Path | None,
    dry_run: bool,
    key_home: Path | None,
    fingerprint: str | None,
    passphrase_file: Path | None,
    cache: Path | None,
    output: str,
) -> None:
    """Build the bundle INVENTORY needs: for every target OS the packages its hosts'
    deploys install with their whole dependency closure (resolved by apt against the
    upstream sources in the inventory's `bundle:` section), the images, models and
    gpuprov's own wheels; a signed manifest over every file (docs/bundles.md).

    \b
    Examples:
      gpuprov bundle build inventories/site.yaml --dry-run
      gpuprov bundle build inventories/site.yaml --to /data/bundle-2026-06 --key-home /srv/keys/bundle
      gpuprov bundle build inventories/site.yaml --to /data/bundle-2026-07 --key-home /srv/keys/bundle \\
          --since /data/bundle-2026-06/manifest.json
    """
    from gpuprov.bundle.build import BuildOptions, build_bundle, result_json
    from gpuprov.errors import ExitCode
    from gpuprov.inventory.loader import load_inventory

    if out is None and not dry_run:
        app.abort("--to DIR is needed (or --dry-run)", ExitCode.BAD_INPUT)
    opts = BuildOptions(
        out=out or Path("."),
        cache=cache or _default_cache(),
        key_home=key_home,
        fingerprint=fingerprint,
        passphrase_file=passphrase_file,
        since=since,
        dry_run=dry_run,
    )
    quiet = output == "json"
    report = (lambda _text: None) if quiet else (lambda text: app.err.print(text, markup=False))
    result = build_bundle(load_inventory(inventory), opts, report)
    if quiet:
        click.echo(result_json(result))
        return
    for os_id, names in result.packages.items():
        app.info(f"{os_id}: {len(names)} packages in the closure")
    if dry_run:
        for f in result.fetches:
            app.info(f"would fetch {f.kind:5} {f.name} ({_size(f.size)})")
        unsized = sum(1 for f in result.fetches if f.size is None)
        extra = f" (and {unsized} whose size the source does not give)" if unsized else ""
        app.info(f"would fetch {len(result.fetches)} files, {_size(result.fetch_bytes)}{extra}")
        return
    m = result.manifest
    assert m is not None
    kind = f"differential on {m.base[:12]}" if m.base else "full"
    app.success(
        f"bundle {m.id[:12]} ({kind}) at {result.out}: {len(m.files)} files listed, "
        f"{result.carried} carried, {_size(m.total_size)} in all; fetched "
        f"{len(result.fetches)} new files ({_size(result.fetch_bytes)})"
    )
