"""What the three `bundle build` tests (Debian, Ubuntu on recorded indexes, RHEL) share:
serving an upstream on loopback, building from it, reading the published apt index, and checking a
refused build left nothing behind."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gpuprov.aptrepo.deb822 import parse_paragraphs
from gpuprov.bundle.build import BuildOptions, build_bundle
from gpuprov.inventory.loader import load_inventory


def build(upstream: dict, inventory: Path, out: Path | None, **kw):
    """`build_bundle` for `inventory` with the fixture's cache and bundle key (`cache=`
    overrides the cache; other keywords go to BuildOptions)."""
    opts = BuildOptions(
        out=out or Path("."),
        cache=kw.pop("cache", upstream["cache"]),
        key_home=upstream["key"].home,
        **kw,
    )
    return build_bundle(load_inventory(inventory), opts)


def packages_index(repo: Path) -> dict[str, set[str]]:
    """name -> versions in a published bundle repository's Packages index."""
    text = (repo / "dists/gpuprov/main/binary-amd64/Packages").read_text()
    out: dict[str, set[str]] = {}
    for p in parse_paragraphs(text):
        out.setdefault(p["Package"], set()).add(p["Version"])
    return out


def assert_refused_cleanly(
    done: subprocess.CompletedProcess, out: Path, workdir: Path, *reasons: str
) -> None:
    """A build the upstreams cannot satisfy: exit 1, each reason on stderr, no traceback,
    and neither the bundle nor its staging directory left in `workdir`."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for reason in reasons:
        assert reason in done.stderr, done.stderr
    assert not out.exists() and not list(workdir.glob(".bundle.building-*"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """directory over HTTP on loopback; yields its URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
