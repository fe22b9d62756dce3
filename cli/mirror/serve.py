"""`gpuprov mirror serve`: serve a store to Hugging Face clients (HF_ENDPOINT)."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import STORE
from gpuprov.cli.app import App


@click.command("serve")
@STORE
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on: loopback unless told; on a mirror host, its site address "
    "(docs/security.md).",
)
@click.option("--port", default=8090, show_default=True, type=int, help="Port (0: any free port).")
@click.option(
    "--token-file", type=click.Path(path_type=Path), help="YAML/JSON tokens and gated repos."
)
@click.option("--tls-cert", type=click.Path(path_type=Path), help="PEM certificate (chain).")
@click.option("--tls-key", type=click.Path(path_type=Path), help="PEM private key.")
@click.option(
    "--public-url",
    help="Base URL clients use, for pagination links (default: the listening address; "
    "never the request's Host header).",
)
@click.option(
    "--max-client-connections",
    default=64,
    show_default=True,
    type=int,
    help="Simultaneous connections one client address may hold; more get 503.",
)
@click.option(
    "--idle-timeout",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Seconds a connection may sit idle or take to send a request's head.",
)
@click.option(
    "--stall-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Seconds a client may stop reading a response before it is dropped.",
)
@click.pass_obj
def serve(
    app: App,
    store: Path,
    host: str,
    port: int,
    token_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    public_url: str | None,
    max_client_connections: int,
    idle_timeout: float,
    stall_timeout: float,
) -> None:
    """Serve STORE read-only until SIGTERM/SIGINT. Prints one JSON line when listening;
    then one JSON access-log line per request on stdout."""
    import json
    import logging
    import sys

    from gpuprov.mirror.sd_notify import notify_ready
    from gpuprov.mirror.server import ServerConfig
    from gpuprov.mirror.server import serve as run_server

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("gpuprov.mirror.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def ready(running) -> None:
        print(
            json.dumps({"event": "listening", "url": running.url, "port": running.port}), flush=True
        )
        notify_ready()  # Type=notify: `systemctl restart` returns once this listens

    config = ServerConfig(
        store=store,
        host=host,
        port=port,
        token_file=token_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
        public_url=public_url,
        max_client_connections=max_client_connections,
        idle_timeout=idle_timeout,
        stall_timeout=stall_timeout,
    )
    run_server(config, on_ready=ready)
