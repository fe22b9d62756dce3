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
import re
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gpuprov.errors import InputError, Location, Problem
from gpuprov.mirror.auth import TokenPolicy
from gpuprov.mirror.connguard import GuardedSite
from gpuprov.mirror.handlers import ETAG, ROUTE, STATE, TOKEN, State, error, handle, url_for
from gpuprov.mirror.routes import Route
from gpuprov.mirror.view import StoreView

access_log = logging.getLogger("gpuprov.mirror.access")
log = logging.getLogger("gpuprov.mirror")


# What clients are sent to in Link headers: scheme, host, port, path; nothing a shell,
# systemd or a header could misread (no whitespace, quotes, `;`, `$`, backslash).
PUBLIC_URL_RE = re.compile(
    r"https?://(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/%-]*)?"
)
WILDCARDS = ("0.0.0.0", "::", "")
# aiohttp keeps an idle connection for an hour by default and has no header timeout: its
# keep-alive timer (armed at connect and after each response, firing while no request has
# been parsed) is the bound on idle and slow-head connections alike.
IDLE_TIMEOUT_S = 15.0
# huggingface_hub downloads with 8 workers; a GPU host runs a few such clients at once.
MAX_CLIENT_CONNECTIONS = 64
# Longer than the idle timeout: a client writing to a slow disk may stop reading a while.
STALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ServerConfig:
    store: Path
    host: str = "127.0.0.1"
    port: int = 8090
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_url: str | None = None  # base of Link URLs; default: the bound address
    # A connection may sit idle, or take to send a request's head, at most this long.
    idle_timeout: float = IDLE_TIMEOUT_S
    max_client_connections: int = MAX_CLIENT_CONNECTIONS  # per client address
    # Sent data unacknowledged this long (a client that stopped reading) drops the connection.
    stall_timeout: float = STALL_TIMEOUT_S

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
        for flag, seconds in (
            ("--idle-timeout", self.idle_timeout),
            ("--stall-timeout", self.stall_timeout),
        ):
            if not 0 < seconds <= 3600:
                problems.append(Problem(Location(flag), f"{seconds}: expected 0 < seconds <= 3600"))
        if not 1 <= self.max_client_connections <= 65536:
            problems.append(
                Problem(Location("--max-client-connections"), "expected 1 to 65536 connections")
            )
        if not 0 <= self.port <= 65535:
            problems.append(Problem(Location("--port"), f"{self.port} is not a TCP port"))
        if self.public_url is not None and not PUBLIC_URL_RE.fullmatch(self.public_url):
            problems.append(
                Problem(
                    Location("--public-url"),
                    f"{self.public_url!r}: expected http(s)://HOST[:PORT][/PATH], no query, "
                    "no whitespace or quotes",
                )
            )
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
        except web.HTTPException as exc:  # aiohttp's own refusals: an answer, not a crash
            resp = error(exc.status, exc.reason.title().replace(" ", ""), exc.reason)
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
    except (ConnectionError, TimeoutError):
        # The client went away mid-body (it will resume with Range), or stopped reading
        # until TCP_USER_TIMEOUT dropped it (ETIMEDOUT): not a server error.
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
    app[STATE] = State(StoreView(config.store), policy, link_base=_strip(config.public_url))
    app.on_response_prepare.append(_set_etag)
    # Every path reaches `handle` (routes.parse decides): `.*` alone does not match a
    # decoded LF, and the router's own 404 for it had no error code.
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)
    return app


def _strip(url: str | None) -> str | None:
    return url.rstrip("/") if url else None


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
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=5.0,
        keepalive_timeout=config.idle_timeout,
    )
    await runner.setup()
    site = GuardedSite(
        runner,
        config.host,
        config.port,
        max_per_client=config.max_client_connections,
        stall_timeout=config.stall_timeout,
        ssl_context=ctx,
    )
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
    url = url_for("https" if ctx else "http", config.host, port)
    if not config.public_url and config.host not in WILDCARDS:
        app[STATE].link_base = url
    return Running(runner, port, url)


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
