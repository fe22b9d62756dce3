"""Request handlers of the model mirror: one function per Hub route, and `handle`, which
parses the raw path, enforces read-only and tokens, and maps lookup errors to Hub error
codes (`X-Error-Code`)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field

from aiohttp import web

from gpuprov.mirror import routes
from gpuprov.mirror.auth import AuthDenied, Grant, TokenPolicy, repo_key
from gpuprov.mirror.metrics import Metrics
from gpuprov.mirror.routes import BadPath, Route
from gpuprov.mirror.view import MirrorLookupError, StoreView

log = logging.getLogger("gpuprov.mirror")

RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII | re.IGNORECASE)
READ_METHODS = ("GET", "HEAD")
# paths-info answers at most this many paths per request, the Hub's own cap
# (huggingface_hub/_commit_api.py batches to it). Bounds the reply: 300k repeated paths in
# one 4 MiB body once made a 77 MB answer.
MAX_PATHS = 1000
BODY_TIMEOUT_S = 30.0  # a request body (paths-info's only) trickling in slower is refused


@dataclass
class State:
    view: StoreView
    policy: TokenPolicy
    metrics: Metrics = field(default_factory=Metrics)
    # Base of the pagination Link URLs: --public-url, else the bound address (set by
    # server.start). Never the request's Host header, which the client chooses and to which
    # huggingface_hub resends its token when it follows the link.
    link_base: str | None = None


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
    # Header values must stay printable ASCII whatever the requested path was: a CR or LF
    # here made aiohttp refuse the whole response (a 500 with a traceback per request).
    safe = routes.CONTROL_RE.sub(
        lambda m: f"\\x{ord(m.group()):02x}", message.encode("ascii", "backslashreplace").decode()
    )
    headers = {"X-Error-Code": code, "X-Error-Message": safe, **extra}
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.json_response({"error": message}, status=status, headers=headers)


def _range_ok(header: str | None, size: int) -> bool:
    """One satisfiable byte range (or none). Anything else is refused with 416."""
    if header is None:
        return True
    m = RANGE_RE.fullmatch(header.strip())
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
    # FileResponse would also serve a `<blob>.gz` sibling to gzip-accepting clients; blob
    # names are bare sha256 digests, so no such file can exist in the store.
    request[ETAG] = etag  # FileResponse sets its own mtime ETag; on_prepare replaces it
    blob = state.view.blob(entry)
    if not blob.is_file():  # a damaged store: say so instead of FileResponse's bare 404
        log.error("blob %s of %s@%s:%s is missing", entry.sha256, route.repo, sha, route.path)
        return error(500, "BlobMissing", f"{route.path}: stored content is missing", sha)
    return BlobResponse(blob, headers=headers)


async def _paths_info(request: web.Request, state: State, route: Route) -> web.Response:
    commit = state.view.resolve(route.repo_type, route.repo, route.revision)
    paths, expand = await _paths_info_body(request)
    out = []
    for p in dict.fromkeys(p.strip("/") for p in paths):  # each path answered once
        if p in commit.files or (p in commit.dirs and p):
            out.append(routes.file_item(commit, p, expand))
    return web.json_response(out)


async def _paths_info_body(request: web.Request) -> tuple[list[str], bool]:
    """The `paths` and `expand` of a paths-info POST: at most MAX_PATHS strings, so the
    answer is bounded however large or nested the body (it is already bounded by
    client_max_size, and must arrive within BODY_TIMEOUT_S)."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            if request.content_type == "application/json":
                try:
                    body = json.loads(await request.read())
                except (ValueError, RecursionError):  # RecursionError: nesting too deep
                    raise BadPath("body is not JSON (or nested too deeply)") from None
                if not isinstance(body, dict):
                    raise BadPath("expected a JSON object with 'paths'")
                paths, expand = body.get("paths", []), bool(body.get("expand"))
            else:
                form = await request.post()
                flag = form.get("expand")
                paths = form.getall("paths", [])
                expand = routes.truthy(flag if isinstance(flag, str) else None)
    except TimeoutError:
        raise BadPath(f"request body not received within {BODY_TIMEOUT_S:g} s") from None
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadPath("'paths' must be a list of strings")
    if len(paths) > MAX_PATHS:
        raise BadPath(f"at most {MAX_PATHS} paths per request, got {len(paths)}; split the list")
    return paths, expand


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


def _link_base(request: web.Request, state: State) -> str:
    if state.link_base:
        return state.link_base
    # Bound to a wildcard address: the local address this connection reached, which the
    # client cannot choose (unlike Host).
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        raise MirrorLookupError("NoLinkBase", 500, "no address to build links from")
    return url_for(request.scheme, sockname[0], sockname[1])


def url_for(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


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
        return routes.tree_response(request, route, commit, _link_base(request, state))
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
