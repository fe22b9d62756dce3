"""The model mirror: an aiohttp server speaking the Hugging Face Hub API, read-only.

`ServerConfig` (validated settings) -> `build_app` -> `start` (tests, in-process) or
`serve` (the CLI; blocks until SIGTERM/SIGINT). File bytes go out with sendfile through
`web.FileResponse`, which also answers Range requests with 206.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gpuprov.errors import InputError, Location, Problem
from gpuprov.mirror.auth import TokenPolicy
from gpuprov.mirror.handlers import ETAG, ROUTE, STATE, TOKEN, State, error, handle
from gpuprov.mirror.routes import Route
from gpuprov.mirror.view import StoreView

access_log = logging.getLogger("gpuprov.mirror.access")
log = logging.getLogger("gpuprov.mirror")


@dataclass(frozen=True)
class ServerConfig:
    store: Path
    host: str = "127.0.0.1"
    port: int = 8090
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_url: str | None = None  # base of Link URLs; default: scheme://Host of the request

    def validate(self) -> None:
        problems = []
        if not (Path(self.store) / "repos").is_dir():
            problems.append(
                Problem(
                    Location(str(self.store)),
                    "not a mirror store (no repos/); run `gpuprov mirror add-model` first",
                )
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append(Problem(Location("--tls-cert/--tls-key"), "give both or neither"))
        if not 0 <= self.port <= 65535:
            problems.append(Problem(Location("--port"), f"{self.port} is not a TCP port"))
        if problems:
            raise InputError(problems)


@web.middleware
async def observe(request: web.Request, handler) -> web.StreamResponse:
    """Send the response here so the access log and metrics see what really went out."""
    state = request.app[STATE]
    state.metrics.in_flight += 1
    started = time.monotonic()
    status, nbytes, aborted, resp = 500, 0, False, None
    try:
        try:
            resp = await handler(request)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.raw_path)
            resp = error(500, "InternalError", "internal server error")
        status = resp.status
        await resp.prepare(request)
        await resp.write_eof()
        status = resp.status  # FileResponse decides 206/416 while preparing
        if request.method != "HEAD" and status not in (304, 204):
            nbytes = resp.content_length or 0
        return resp
    except ConnectionError:
        # The client went away mid-body (it will resume with Range): not a server error.
        aborted = True
        assert resp is not None  # the handler's own errors became a 500 response above
        return resp
    except asyncio.CancelledError:
        aborted = True
        raise
    finally:
        state.metrics.in_flight -= 1
        route: Route | None = request.get(ROUTE)
        code = resp.headers.get("X-Error-Code") if resp is not None else None
        name = route.name if route else "invalid"
        if aborted:
            state.metrics.aborted += 1
        state.metrics.record(name, status, nbytes, code)
        access_log.info(
            json.dumps(
                {
                    "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "remote": request.remote,
                    "method": request.method,
                    "path": request.raw_path[:1024],
                    "route": name,
                    "repo": route.repo if route and route.repo else None,
                    "status": status,
                    "bytes": nbytes,
                    "range": request.headers.get("Range"),
                    "error": code,
                    "aborted": aborted,
                    "token": request.get(TOKEN),
                    "ms": round((time.monotonic() - started) * 1000, 2),
                    "ua": request.headers.get("User-Agent", "")[:200],
                },
                separators=(",", ":"),
            )
        )


async def _set_etag(request: web.Request, response: web.StreamResponse) -> None:
    etag = request.get(ETAG)
    if etag and response.status in (200, 206):
        response.headers["ETag"] = etag


def build_app(config: ServerConfig) -> web.Application:
    config.validate()
    policy = TokenPolicy.load(config.token_file) if config.token_file else TokenPolicy()
    app = web.Application(middlewares=[observe], client_max_size=4 * 1024 * 1024)
    app[STATE] = State(StoreView(config.store), policy, public_url=config.public_url)
    app.on_response_prepare.append(_set_etag)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise InputError(
            [Problem(Location(str(config.tls_cert)), f"cannot load TLS certificate/key: {exc}")]
        ) from exc
    return ctx


@dataclass
class Running:
    runner: web.AppRunner
    port: int
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(config: ServerConfig) -> Running:
    """Start serving on the running loop; port 0 picks a free port (see .port)."""
    app = build_app(config)
    ctx = ssl_context(config)
    # Bounded: a stuck client must not hold a restart for a minute.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ctx, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise InputError(
            [
                Problem(
                    Location("--port"),
                    f"cannot listen on {config.host}:{config.port}: {exc.strerror}",
                )
            ]
        ) from exc
    port = runner.addresses[0][1]
    host = config.host if ":" not in config.host else f"[{config.host}]"
    return Running(runner, port, f"{'https' if ctx else 'http'}://{host}:{port}")


def serve(config: ServerConfig, on_ready: Callable[[Running], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT; then finish in-flight responses and return."""

    async def main() -> None:
        running = await start(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        if on_ready:
            on_ready(running)
        await stop.wait()
        await running.stop()

    asyncio.run(main())
