"""`gpuprov bundle export`: copy a signed bundle onto removable media."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import OUTPUT
from gpuprov.cli.app import App

from gpuprov.errors import ExitCode


@click.command()
@click.argument("bundle_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--to",
    "dest",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The mounted media (or an empty directory on it).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    help="Split files larger than this many bytes (default: 4 GiB - 1 MiB on FAT32, "
    "no splitting on exFAT/ext4).",
)
@click.option("--threads", type=click.IntRange(1, 64), help="Files copied at once.")
@OUTPUT
@click.pass_obj
def export(
    app: App,
    bundle_dir: Path,
    dest: Path,
    chunk_size: int | None,
    threads: int | None,
    output: str,
) -> None:
    """Copy the signed bundle in BUNDLE_DIR onto media mounted at --to.

    Reads every file once, hashing while copying; checks free space first; splits files
    into chunks on FAT32; fsyncs before it reports success. Interrupted (kill, unplugged
    stick)? Run the same command again: verified chunks are kept, only the rest is copied.

    \b
    Examples:
      gpuprov bundle export /data/bundle --to /media/usb
      gpuprov bundle export /data/bundle --to /media/usb --output json
    """
    from gpuprov.cli.bundle._progress import byte_progress

    from gpuprov.bundle.export import export_bundle
    from gpuprov.bundle.layout import load_manifest

    total = load_manifest(bundle_dir).total_size
    try:
        with byte_progress(app, "export", total, quiet=output == "json") as advance:
            result = export_bundle(
                bundle_dir, dest, chunk_size=chunk_size, threads=threads, progress=advance
            )
    except OSError as exc:  # media full after all, unplugged, read-only: say which, no traceback
        app.abort(f"error: {exc}; run the same command again to resume", ExitCode.HOSTS_FAILED)
    if output == "json":
        app.json(result.as_dict())
        return
    if not result.space_checked:
        app.warning(f"{dest}: the filesystem does not report free space; it was not checked")
    chunking = f"chunks of {result.chunk_size:,} bytes" if result.chunk_size else "no chunks"
    app.success(
        f"exported bundle {result.bundle[:12]} to {dest} ({result.filesystem}, {chunking}): "
        f"{result.files} files, {result.bytes_written:,} bytes written, "
        f"{result.bytes_reused:,} bytes already there and verified, in {result.seconds} s"
    )
