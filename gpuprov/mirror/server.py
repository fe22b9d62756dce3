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
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from gpuprov.errors import InputError, Location, Problem
from gpuprov.mirror import routes
from gpuprov.mirror.auth import AuthDenied, Grant, TokenPolicy, repo_key
from gpuprov.mirror.metrics import Metrics
from gpuprov.mirror.routes import BadPath, Route
from gpuprov.mirror.view import MirrorLookupError, StoreView

access_log = logging.getLogger("gpuprov.mirror.access")
log = logging.getLogger("gpuprov.mirror")

RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$", re.ASCII | re.IGNORECASE)
READ_METHODS = ("GET", "HEAD")


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


@dataclass
class State:
    view: StoreView
    policy: TokenPolicy
    metrics: Metrics = field(default_factory=Metrics)
    public_url: str | None = None


STATE = web.AppKey("state", State)


def _request_key(name: str, kind: type):
    # Typed request keys exist from aiohttp 3.13; plain strings work before that.
    return web.RequestKey(name, kind) if hasattr(web, "RequestKey") else name


ROUTE = _request_key("route", Route)
TOKEN = _request_key("token", str)
ETAG = _request_key("etag", str)


class BlobResponse(web.FileResponse):
    """FileResponse sent by the `observe` middleware; aiohttp prepares a response again
    after the handler chain, which FileResponse does not tolerate."""

    async def prepare(self, request):  # type: ignore[override]
        if self.prepared:
            return None
        return await super().prepare(request)


def error(
    status: int, code: str, message: str, commit: str | None = None, **extra: str
) -> web.Response:
    # Header values must stay ASCII whatever the requested path was.
    safe = message.encode("ascii", "backslashreplace").decode()
    headers = {"X-Error-Code": code, "X-Error-Message": safe, **extra}
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.json_response({"error": message}, status=status, headers=headers)


def _range_ok(header: str | None, size: int) -> bool:
    """One satisfiable byte range (or none). Anything else is refused with 416."""
    if header is None:
        return True
    m = RANGE_RE.match(header.strip())
    if not m or m.groups() == ("", ""):
        return False
    start, end = m.groups()
    if start == "":
        return int(end) > 0 or size == 0
    if end and int(end) < int(start):
        return False
    return int(start) < size


async def _resolve(request: web.Request, state: State, route: Route) -> web.StreamResponse:
    commit = state.view.resolve(route.repo_type, route.repo, route.revision)
    entry = commit.files.get(route.path)
    sha = commit.info.sha
    if entry is None:
        # X-Repo-Commit lets the client cache the absence (.no_exist/<sha>/<path>).
        raise MirrorLookupError("EntryNotFound", 404, f"{route.path} not found at {sha}", sha)
    headers = {
        "X-Repo-Commit": sha,
        "Accept-Ranges": "bytes",
        "Content-Type": routes.content_type(route.path),
        "Content-Disposition": routes.content_disposition(route.path),
        "Cache-Control": "public, max-age=31536000, immutable"
        if route.revision == sha
        else "no-cache",
    }
    if entry.lfs:
        headers["X-Linked-Etag"] = f'"{entry.etag}"'
        headers["X-Linked-Size"] = str(entry.size)
    etag = f'"{entry.etag}"'
    inm = request.headers.get("If-None-Match")
    if inm and (
        inm.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in inm.split(",")]
    ):
        return web.Response(status=304, headers={**headers, "ETag": etag})
    if not _range_ok(request.headers.get("Range"), entry.size):
        return error(
            416,
            "RangeNotSatisfiable",
            f"Range {request.headers.get('Range')!r} not satisfiable",
            sha,
            **{"Content-Range": f"bytes */{entry.size}"},
        )
    request[ETAG] = etag  # FileResponse sets its own mtime ETag; on_prepare replaces it
    return BlobResponse(state.view.blob(entry), headers=headers)


async def _paths_info(request: web.Request, state: State, route: Route) -> web.Response:
    commit = state.view.resolve(route.repo_type, route.repo, route.revision)
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise BadPath("body is not JSON") from None
        paths, expand = body.get("paths", []), bool(body.get("expand"))
    else:
        form = await request.post()
        paths, expand = form.getall("paths", []), routes.truthy(form.get("expand"))
    out = []
    for p in paths if isinstance(paths, list) else [paths]:
        p = str(p).strip("/")
        if p in commit.files or (p in commit.dirs and p):
            out.append(routes.file_item(commit, p, expand))
    return web.json_response(out)


def _refs(state: State, route: Route) -> web.Response:
    refs = state.view.refs(route.repo_type, route.repo)

    def fmt(kind: str, prefix: str) -> list[dict]:
        return [
            {"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": s}
            for n, s in sorted(refs[kind].items())
        ]

    return web.json_response(
        {
            "branches": fmt("branches", "heads"),
            "tags": fmt("tags", "tags"),
            "converts": [],
            "pullRequests": [],
        }
    )


def _list(request: web.Request, state: State, route: Route) -> web.Response:
    search = request.query.get("search", "").lower()
    author = request.query.get("author")
    out = []
    for repo in state.view.repos(route.repo_type):
        if (search and search not in repo.lower()) or (author and repo.split("/")[0] != author):
            continue
        commit = (
            state.view.resolve(route.repo_type, repo, "main")
            if "main" in state.view.refs(route.repo_type, repo)["branches"]
            else None
        )
        gated = state.policy.is_gated(repo_key(route.repo_type, repo))
        item = {
            "id": repo,
            "private": False,
            "gated": "manual" if gated else False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
        }
        if commit is not None:
            item |= {
                "sha": commit.info.sha,
                "lastModified": commit.info.created_at,
                "createdAt": commit.info.created_at,
            }
        out.append(item)
    return web.json_response(out)


async def _dispatch(
    request: web.Request, state: State, route: Route, grant: Grant | None
) -> web.StreamResponse:
    if route.name == "healthz":
        return web.json_response({"status": "ok"})
    if route.name == "metrics":
        return web.Response(
            text=state.metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )
    if route.name == "whoami":
        if grant is None:
            return error(401, "Unauthorized", "Invalid credentials in Authorization header")
        return web.json_response(
            {
                "type": "user",
                "id": grant.name,
                "name": grant.name,
                "fullname": grant.name,
                "isPro": False,
                "orgs": [],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": grant.name, "role": "read"},
                },
            }
        )
    if route.name == "list":
        return _list(request, state, route)
    if route.name == "unknown":
        return error(404, "NotFound", "no such route on this mirror")
    # Every repo route: the repo must exist, then the token must allow it.
    state.view.refs(route.repo_type, route.repo)
    state.policy.check(grant, route.repo_type, route.repo)
    if route.name == "resolve":
        return await _resolve(request, state, route)
    if route.name == "info":
        commit = state.view.resolve(route.repo_type, route.repo, route.revision)
        gated = state.policy.is_gated(repo_key(route.repo_type, route.repo))
        return web.json_response(routes.repo_info(commit, gated))
    if route.name == "tree":
        commit = state.view.resolve(route.repo_type, route.repo, route.revision)
        base = state.public_url or f"{request.scheme}://{request.host}"
        return routes.tree_response(request, route, commit, base.rstrip("/"))
    if route.name == "paths-info":
        return await _paths_info(request, state, route)
    if route.name == "refs":
        return _refs(state, route)
    if route.name == "commits":
        c = state.view.resolve(route.repo_type, route.repo, route.revision).info
        title = "Imported into the gpuprov model mirror"
        return web.json_response(
            [
                {
                    "id": c.sha,
                    "title": title,
                    "message": title,
                    "authors": [{"user": "gpuprov"}],
                    "date": c.created_at,
                }
            ]
        )
    return error(404, "NotFound", "no such route on this mirror")


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        route = routes.parse(request.raw_path)
        request[ROUTE] = route
        allowed = ("POST",) if route.name == "paths-info" else READ_METHODS
        if request.method not in allowed:
            return error(
                405, "MethodNotAllowed", "this mirror is read-only", Allow=", ".join(allowed)
            )
        grant = None
        if route.name not in ("healthz", "metrics"):
            grant = state.policy.identify(request.headers.get("Authorization"))
            if grant:
                request[TOKEN] = grant.name
        return await _dispatch(request, state, route, grant)
    except BadPath as exc:
        return error(400, "InvalidPath", str(exc))
    except MirrorLookupError as exc:
        return error(exc.status, exc.code, str(exc), exc.commit)
    except AuthDenied as exc:
        return error(exc.status, exc.code, str(exc))
    except web.HTTPException as exc:  # from aiohttp itself, e.g. 413 for a huge form body
        return error(exc.status, exc.reason.title().replace(" ", ""), exc.reason)


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
