"""URL parsing and the Hub API handlers (docs/hf-mirror-protocol.md).

Routing works on the raw request path, one segment at a time, because the revision comes
percent-encoded (`refs%2Fpr%2F1`) and must not be split, and because a decoded path can
no longer tell `..` from `%2E%2E`.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from aiohttp import web

from gpuprov.mirror.view import Commit, MirrorLookupError

TYPE_PREFIXES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PAGE_SIZE = 1000  # the Hub's tree page size (50 with expand)
PAGE_SIZE_EXPAND = 50


class BadPath(Exception):
    pass


@dataclass(frozen=True)
class Route:
    name: str  # metrics label: resolve, info, tree, paths-info, refs, ...
    repo_type: str = ""
    repo: str = ""
    revision: str = ""
    path: str = ""


CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _decode(segment: str) -> str:
    """One decoded path segment; control characters (CR, LF, NUL, ...) are refused here,
    before any name reaches a header, a log line or the store."""
    try:
        text = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise BadPath("path is not valid UTF-8") from None
    if CONTROL_RE.search(text):
        raise BadPath(f"control character in path: {text!r:.200}")
    return text


def safe_repo_path(raw: str) -> str:
    """A file or folder path inside a repo: no empty, `.` or `..` parts, no backslash,
    NUL or absolute path, however encoded."""
    path = _decode(raw)
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise BadPath(f"invalid path {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise BadPath(f"invalid path {path!r}")
    return path


def _repo(segs: list[str]) -> str:
    if len(segs) < 2:
        raise BadPath("expected ORG/NAME")
    org, name = _decode(segs[0]), _decode(segs[1])
    for part in (org, name):
        if part in ("", ".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise BadPath(f"invalid repo id {org}/{name}")
    return f"{org}/{name}"


def parse(raw_path: str) -> Route:
    """Turn the raw request path into a Route; unknown paths give Route('unknown')."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith("/"):
        raise BadPath("path must start with /")
    _decode(path)  # refuses control characters anywhere, whatever the route
    segs = path[1:].split("/")
    if segs in (["healthz"], ["metrics"]):
        return Route(segs[0])
    if segs == ["api", "whoami-v2"]:
        return Route("whoami")
    if len(segs) == 2 and segs[0] == "api" and segs[1] in TYPE_PREFIXES:
        return Route("list", TYPE_PREFIXES[segs[1]])
    if len(segs) >= 4 and segs[0] == "api" and segs[1] in TYPE_PREFIXES:
        repo_type, repo, rest = TYPE_PREFIXES[segs[1]], _repo(segs[2:4]), segs[4:]
        if not rest:
            return Route("info", repo_type, repo, "main")
        if rest[0] == "revision" and len(rest) == 2:
            return Route("info", repo_type, repo, _decode(rest[1]))
        if rest[0] in ("tree", "paths-info") and len(rest) >= 2:
            sub = "/".join(rest[2:])
            return Route(
                rest[0], repo_type, repo, _decode(rest[1]), safe_repo_path(sub) if sub else ""
            )
        if rest == ["refs"]:
            return Route("refs", repo_type, repo)
        if rest[0] == "commits" and len(rest) == 2:
            return Route("commits", repo_type, repo, _decode(rest[1]))
        return Route("unknown")
    repo_type = "model"
    if segs and segs[0] in ("datasets", "spaces"):
        repo_type, segs = TYPE_PREFIXES[segs[0]], segs[1:]
    if len(segs) >= 5 and segs[2] == "resolve":
        return Route(
            "resolve", repo_type, _repo(segs), _decode(segs[3]), safe_repo_path("/".join(segs[4:]))
        )
    return Route("unknown")


# ---- JSON bodies -----------------------------------------------------------------------
def _lfs(entry) -> dict | None:
    return (
        {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        if entry.lfs
        else None
    )


def file_item(commit: Commit, path: str, expand: bool) -> dict:
    entry = commit.files.get(path)
    if entry is not None:
        item = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
        if entry.lfs:
            item["lfs"] = _lfs(entry)
    else:
        item = {"type": "directory", "oid": commit.dir_oids[path], "size": 0, "path": path}
    if expand:
        item["lastCommit"] = {
            "id": commit.info.sha,
            "title": "Imported into the gpuprov model mirror",
            "date": commit.info.created_at,
        }
    return item


def repo_info(commit: Commit, gated: bool) -> dict:
    info = commit.info
    org = info.repo.split("/")[0]
    siblings = []
    for entry in info.files:
        sib = {"rfilename": entry.path, "size": entry.size, "blobId": entry.oid}
        if entry.lfs:
            sib["lfs"] = {
                "sha256": entry.sha256,
                "size": entry.size,
                "pointerSize": entry.pointer_size,
            }
        siblings.append(sib)
    data = {
        "_id": info.sha[:24],
        "id": info.repo,
        "author": org,
        "sha": info.sha,
        "lastModified": info.created_at,
        "createdAt": info.created_at,
        "private": False,
        "gated": "manual" if gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": info.total_size,
    }
    if info.repo_type == "model":
        data["modelId"] = info.repo
    return data


def tree_items(commit: Commit, path: str, recursive: bool) -> list[str]:
    if path and path not in commit.dirs:
        kind = "file, not a folder" if path in commit.files else "not found"
        raise MirrorLookupError("EntryNotFound", 404, f"{path}: {kind}", commit.info.sha)
    if not recursive:
        return commit.dirs[path]
    out, stack = [], list(reversed(commit.dirs[path]))
    while stack:
        item = stack.pop()
        out.append(item)
        if item in commit.dirs:
            stack.extend(reversed(commit.dirs[item]))
    return out


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise BadPath("invalid cursor") from None
    if value < 0:
        raise BadPath("invalid cursor")
    return value


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def tree_response(
    request: web.Request, route: Route, commit: Commit, base_url: str
) -> web.Response:
    recursive = truthy(request.query.get("recursive"))
    expand = truthy(request.query.get("expand"))
    items = tree_items(commit, route.path, recursive)
    start = decode_cursor(request.query.get("cursor"))
    size = PAGE_SIZE_EXPAND if expand else PAGE_SIZE
    try:
        size = max(1, min(size, int(request.query.get("limit", size))))
    except ValueError:
        raise BadPath("invalid limit") from None
    page = items[start : start + size]
    headers = {}
    if start + size < len(items):
        # The next page names the sha, not the branch: all pages list one commit.
        sub = "/" + quote(route.path, safe="") if route.path else ""
        url = (
            f"{base_url}/api/{route.repo_type}s/{route.repo}/tree/{commit.info.sha}{sub}"
            f"?recursive={recursive}&expand={expand}&limit={size}&cursor={encode_cursor(start + size)}"
        )
        headers["Link"] = f'<{url}>; rel="next"'
    body = [file_item(commit, p, expand) for p in page]
    return web.json_response(body, headers=headers, dumps=_dumps)


def content_type(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def content_disposition(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    ascii_name = CONTROL_RE.sub("_", name.encode("ascii", "replace").decode().replace('"', "_"))
    return f"inline; filename*=UTF-8''{quote(name, safe='')}; filename=\"{ascii_name}\";"


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))
