"""`gpuprov bundle verify`: check a bundle on media before anything is imported."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import OUTPUT
from gpuprov.cli.app import App

from gpuprov.errors import ExitCode


@click.command()
@click.argument("media", type=click.Path(path_type=Path))
@click.option(
    "--keyring",
    required=True,
    type=click.Path(path_type=Path),
    help="The site's bundle public key (binary or armored), carried over beforehand.",
)
@click.option(
    "--base",
    "base_manifest",
    type=click.Path(path_type=Path),
    help="For a differential bundle: the base bundle's manifest.json, to check that every "
    "file the base lacks is on the media.",
)
@click.option("--threads", type=click.IntRange(1, 64), help="Files hashed at once.")
@OUTPUT
@click.pass_obj
def verify(
    app: App,
    media: Path,
    keyring: Path,
    base_manifest: Path | None,
    threads: int | None,
    output: str,
) -> None:
    """Check the bundle at MEDIA: signature, every byte, and nothing else on it.

    Reports each problem by name: a bad or foreign signature, absolute or '..' names,
    symlinks, unlisted files, missing or short chunks, content that differs.
    Exit 0: clean; 1: damaged or untrusted; 2: bad input (no such media or keyring).

    \b
    Examples:
      gpuprov bundle verify /media/usb --keyring /etc/gpuprov/bundle.gpg
      gpuprov bundle verify /media/usb --keyring bundle.gpg --base /srv/gpuprov/current/manifest.json
    """
    from gpuprov.cli.bundle._progress import byte_progress

    from gpuprov.bundle.layout import Manifest
    from gpuprov.bundle.verify import verify_media
    from gpuprov.errors import InputError, Location, Problem

    base = None
    if base_manifest is not None:
        if not base_manifest.is_file():
            raise InputError([Problem(Location(str(base_manifest)), "not found")])
        base = Manifest.from_json(base_manifest.read_bytes(), source=str(base_manifest))
    total = _expected_bytes(media)
    with byte_progress(app, "verify", total, quiet=output == "json") as advance:
        report = verify_media(media, keyring, base=base, threads=threads, progress=advance)
    if output == "json":
        app.json(report.as_dict())
    else:
        for finding in report.findings:
            app.error(str(finding))
        if report.not_carried:
            app.warning(
                f"differential bundle on base {report.base}: {report.not_carried} files come "
                "from the base; give --base BASE/manifest.json to check the media holds the rest"
            )
        if report.ok:
            app.success(
                f"bundle {report.bundle} is intact: signed by {report.signer}, {report.files} "
                f"files, {report.bytes_hashed:,} bytes hashed in {report.seconds} s"
            )
        else:
            app.error(f"{media}: {len(report.findings)} problem(s); do not import this bundle")
    if not report.ok:
        app.abort(None, ExitCode.HOSTS_FAILED)


def _expected_bytes(media: Path) -> int:
    """The progress bar's total, from the (not yet trusted) manifest; 0 if unreadable.
    Never walks the media for it: a planted symlink must not be followed, even here."""
    from gpuprov.bundle.layout import load_manifest
    from gpuprov.errors import InputError

    try:
        return load_manifest(media).total_size
    except (InputError, OSError):
        return 0
