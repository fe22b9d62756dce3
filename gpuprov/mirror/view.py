"""Read side of the store for the server: repo/revision resolution, file lookup, folders.

Manifests are immutable (named by sha) so they are cached for the life of the process;
refs.json is re-read when it is replaced, so an import is served without a restart.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from gpuprov.mirror.store import (
    SHA1_RE,
    CommitInfo,
    FileEntry,
    blob_path,
    read_manifest,
    repo_dir,
    tree_oid,
)


class MirrorLookupError(Exception):
    """Maps to a Hub error: code is the X-Error-Code, status the HTTP status."""

    def __init__(self, code: str, status: int, message: str, commit: str | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.commit = commit


@dataclass(frozen=True)
class Commit:
    info: CommitInfo
    files: dict[str, FileEntry]
    dirs: dict[str, list[str]]  # folder ("" = root) -> child paths (files and folders)
    dir_oids: dict[str, str]


def _build_commit(info: CommitInfo) -> Commit:
    files = {f.path: f for f in info.files}
    dirs: dict[str, set[str]] = {"": set()}
    for path in files:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            parent, child = "/".join(parts[: i - 1]), "/".join(parts[:i])
            dirs.setdefault(parent, set()).add(child)
            if i < len(parts):
                dirs.setdefault(child, set())
    oids: dict[str, str] = {}
    for d in sorted(dirs, key=lambda p: -p.count("/") if p else 1):
        entries = []
        for child in dirs[d]:
            name = child.rsplit("/", 1)[-1]
            if child in files:
                entries.append((name, files[child].oid, False))
            else:
                entries.append((name, oids[child], True))
        oids[d] = tree_oid(entries)
    return Commit(info, files, {d: sorted(c) for d, c in dirs.items()}, oids)


class StoreView:
    def __init__(self, store: Path, cache_size: int = 256):
        self.store = Path(store)
        self._refs: dict[tuple[str, str], tuple[tuple[int, int, int], dict]] = {}
        self._commits: OrderedDict[tuple[str, str, str], Commit] = OrderedDict()
        self._cache_size = cache_size

    def refs(self, repo_type: str, repo: str) -> dict[str, dict[str, str]]:
        path = repo_dir(self.store, repo, repo_type) / "refs.json"
        try:
            st = os.stat(path)
            # refs.json is replaced by rename, so a new inode marks every update.
            mtime = (st.st_ino, st.st_mtime_ns, st.st_size)
        except (FileNotFoundError, NotADirectoryError):
            raise MirrorLookupError(
                "RepoNotFound", 404, f"Repository {repo} ({repo_type}) not found"
            ) from None
        cached = self._refs.get((repo_type, repo))
        if cached and cached[0] == mtime:
            return cached[1]
        data = json.loads(path.read_text())
        refs = {"branches": data.get("branches", {}), "tags": data.get("tags", {})}
        self._refs[(repo_type, repo)] = (mtime, refs)
        return refs

    def exists(self, repo_type: str, repo: str) -> bool:
        try:
            self.refs(repo_type, repo)
        except MirrorLookupError:
            return False
        return True

    def resolve(self, repo_type: str, repo: str, revision: str) -> Commit:
        refs = self.refs(repo_type, repo)
        rev = revision
        for prefix, kind in (("refs/heads/", "branches"), ("refs/tags/", "tags")):
            if rev.startswith(prefix) and rev[len(prefix) :] in refs[kind]:
                return self._commit(repo_type, repo, refs[kind][rev[len(prefix) :]])
        sha = refs["branches"].get(rev) or refs["tags"].get(rev)
        if (
            sha is None
            and SHA1_RE.fullmatch(rev)
            and (
                repo_dir(self.store, repo, repo_type) / "commits" / rev / "manifest.json"
            ).is_file()
        ):
            sha = rev
        if sha is None:
            raise MirrorLookupError(
                "RevisionNotFound", 404, f"Invalid rev id: {revision} for {repo}"
            )
        return self._commit(repo_type, repo, sha)

    def _commit(self, repo_type: str, repo: str, sha: str) -> Commit:
        key = (repo_type, repo, sha)
        commit = self._commits.get(key)
        if commit is None:
            commit = _build_commit(read_manifest(self.store, repo, repo_type, sha))
            self._commits[key] = commit
            while len(self._commits) > self._cache_size:
                self._commits.popitem(last=False)
        else:
            self._commits.move_to_end(key)
        return commit

    def blob(self, entry: FileEntry) -> Path:
        return blob_path(self.store, entry.sha256)

    def repos(self, repo_type: str) -> list[str]:
        root = self.store / "repos" / f"{repo_type}s"
        return sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in root.glob("*/*/refs.json"))
