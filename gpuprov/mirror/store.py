"""The model mirror's on-disk store: repos, refs, immutable commit manifests, blobs.

Layout (docs/model-mirror.md)::

    STORE/
      blobs/sha256/<2 hex>/<sha256>          file contents, addressed by sha256, read-only
      repos/<type>s/<org>/<name>/
        refs.json                            {"branches": {name: sha}, "tags": {name: sha}}
        commits/<sha>/manifest.json          every file: path, size, oid, sha256, lfs
      tmp/                                   staging; never read by the server

An import copies every file into tmp/ while hashing it (one read pass), renames it into
blobs/, writes the manifest into a temp dir and renames that to commits/<sha>, and only
then replaces refs.json (write temp, fsync, rename). A repo is visible once refs.json
exists, so a failed or killed import leaves nothing visible; leftovers in tmp/ are removed
by the next import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gpuprov.errors import InputError, Location, Problem

REPO_TYPES = ("model", "dataset", "space")
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")

# The Hub stores these in git LFS (its default .gitattributes) and refuses plain-git files
# of 10 MiB or more; both rules together decide whether a file is listed with `lfs`.
LFS_MIN_SIZE = 10 * 1024 * 1024
LFS_SUFFIXES = frozenset(
    [
        ".7z",
        ".arrow",
        ".bin",
        ".bz2",
        ".ckpt",
        ".ftz",
        ".gguf",
        ".gz",
        ".h5",
        ".joblib",
        ".mlmodel",
        ".model",
        ".msgpack",
        ".npy",
        ".npz",
        ".onnx",
        ".ot",
        ".parquet",
        ".pb",
        ".pickle",
        ".pkl",
        ".pt",
        ".pth",
        ".rar",
        ".safetensors",
        ".tar",
        ".tflite",
        ".tgz",
        ".wasm",
        ".xz",
        ".zip",
        ".zst",
    ]
)
SKIP_DIRS = (".git", ".cache/huggingface")  # VCS data and local_dir download metadata
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    oid: str  # git blob sha1 as the Hub lists it (of the LFS pointer for LFS files)
    sha256: str  # content address in blobs/
    lfs: bool
    pointer_size: int = 0

    @property
    def etag(self) -> str:
        """What the Hub sends as ETag / X-Linked-Etag; clients name cache blobs after it."""
        return self.sha256 if self.lfs else self.oid

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "size": self.size,
            "oid": self.oid,
            "sha256": self.sha256,
            "lfs": {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
            if self.lfs
            else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> FileEntry:
        lfs = data.get("lfs")
        return cls(
            path=data["path"],
            size=data["size"],
            oid=data["oid"],
            sha256=data["sha256"],
            lfs=lfs is not None,
            pointer_size=lfs["pointerSize"] if lfs else 0,
        )


@dataclass(frozen=True)
class CommitInfo:
    repo: str
    repo_type: str
    sha: str
    refs: tuple[str, ...]
    files: tuple[FileEntry, ...] = field(repr=False)
    created_at: str = ""
    source: str = ""  # "hf-cache" (upstream sha kept) or "directory" (sha = manifest hash)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


# ---- hashing ------------------------------------------------------------------------------
def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def is_lfs(path: str, size: int) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    if size >= LFS_MIN_SIZE or "tfevents" in name or ".tar." in name:
        return True
    return any(name.endswith(s) for s in LFS_SUFFIXES) or path.startswith("saved_model/")


def tree_oid(entries: list[tuple[str, str, bool]]) -> str:
    """Git tree sha1 of (name, oid, is_dir) children: what the Hub lists for a folder."""
    body = b""
    for name, oid, is_dir in sorted(entries, key=lambda e: e[0] + ("/" if e[2] else "")):
        mode = b"40000" if is_dir else b"100644"
        body += mode + b" " + name.encode() + b"\0" + bytes.fromhex(oid)
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


# ---- paths --------------------------------------------------------------------------------
def repo_dir(store: Path, repo: str, repo_type: str) -> Path:
    org, name = repo.split("/")
    return store / "repos" / f"{repo_type}s" / org / name


def blob_path(store: Path, sha256: str) -> Path:
    return store / "blobs" / "sha256" / sha256[:2] / sha256


def check_repo_id(repo: str, repo_type: str = "model") -> None:
    problems = []
    parts = repo.split("/")
    if len(parts) != 2 or not all(NAME_RE.match(p) and ".." not in p for p in parts):
        problems.append(f"repo {repo!r}: expected ORG/NAME (letters, digits, '.', '_', '-')")
    if repo_type not in REPO_TYPES:
        problems.append(f"repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
    if problems:
        raise InputError([Problem(Location("--repo"), p) for p in problems])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


# ---- reading ------------------------------------------------------------------------------
def read_refs(store: Path, repo: str, repo_type: str = "model") -> dict[str, dict[str, str]]:
    path = repo_dir(store, repo, repo_type) / "refs.json"
    data = json.loads(path.read_text())
    return {"branches": dict(data.get("branches", {})), "tags": dict(data.get("tags", {}))}


def read_manifest(store: Path, repo: str, repo_type: str, sha: str) -> CommitInfo:
    data = json.loads(
        (repo_dir(store, repo, repo_type) / "commits" / sha / "manifest.json").read_text()
    )
    return CommitInfo(
        repo=data["repo"],
        repo_type=data["repo_type"],
        sha=data["sha"],
        refs=tuple(data.get("refs", ())),
        files=tuple(FileEntry.from_json(f) for f in data["files"]),
        created_at=data.get("created_at", ""),
        source=data.get("source", ""),
    )


def list_repos(store: Path) -> list[CommitInfo]:
    """Every visible repo at the commit of its `main` branch (else its first ref)."""
    out = []
    root = Path(store) / "repos"
    for repo_type in REPO_TYPES:
        for refs_file in sorted((root / f"{repo_type}s").glob("*/*/refs.json")):
            repo = f"{refs_file.parent.parent.name}/{refs_file.parent.name}"
            refs = read_refs(store, repo, repo_type)
            names = {**refs["tags"], **refs["branches"]}
            if not names:
                continue
            sha = names.get("main") or next(iter(names.values()))
            info = read_manifest(store, repo, repo_type, sha)
            pointing = tuple(sorted(n for n, s in names.items() if s == sha))
            out.append(
                CommitInfo(repo, repo_type, sha, pointing, info.files, info.created_at, info.source)
            )
    return out


# ---- importing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    root: Path  # the directory whose files are imported
    upstream_sha: str | None  # a Hugging Face cache snapshot keeps its commit sha
    upstream_refs: tuple[str, ...]  # cache refs/ files pointing at that sha


def _detect_source(source: Path, revision: str | None) -> _Source:
    """A plain directory, a cache snapshot dir (…/models--o--n/snapshots/<sha>), or a cache
    repo dir (…/models--o--n, resolved through refs/<revision or main>)."""
    source = source.resolve()
    if not source.is_dir():
        raise InputError([Problem(Location(str(source)), "model source is not a directory")])
    if (source / "snapshots").is_dir() and (source / "refs").is_dir():
        ref = revision or "main"
        ref_file = source / "refs" / ref
        if SHA1_RE.match(ref):
            snap = source / "snapshots" / ref
        elif ref_file.is_file():
            snap = source / "snapshots" / ref_file.read_text().strip()
        else:
            raise InputError(
                [
                    Problem(
                        Location(str(ref_file)), f"no ref {ref!r} in this Hugging Face cache repo"
                    )
                ]
            )
        if not snap.is_dir():
            raise InputError([Problem(Location(str(snap)), "snapshot directory missing")])
        source = snap
    if SHA1_RE.match(source.name) and source.parent.name == "snapshots":
        refs_dir = source.parent.parent / "refs"
        refs = []
        if refs_dir.is_dir():
            for ref_file in sorted(p for p in refs_dir.rglob("*") if p.is_file()):
                if ref_file.read_text().strip() == source.name:
                    refs.append(ref_file.relative_to(refs_dir).as_posix())
        return _Source(source, source.name, tuple(refs))
    return _Source(source, None, ())


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if rel_dir + d not in SKIP_DIRS)
        # Directory symlinks are not followed: a repo is a tree of files.
        for name in sorted(filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]):
            yield rel_dir + name, Path(dirpath) / name


def _import_file(store: Path, src: Path, rel: str) -> FileEntry:
    """Copy one file into blobs/ while hashing it; the blob appears by rename only."""
    tmp_dir = store / "tmp"
    sha256, sha1 = hashlib.sha256(), None
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="blob-")
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            size = os.fstat(fin.fileno()).st_size
            lfs = is_lfs(rel, size)
            if not lfs:
                sha1 = hashlib.sha1(b"blob %d\0" % size)
            while chunk := fin.read(CHUNK):
                sha256.update(chunk)
                if sha1 is not None:
                    sha1.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
            if fout.tell() != size:
                raise InputError([Problem(Location(str(src)), "file changed while importing")])
        digest = sha256.hexdigest()
        target = blob_path(store, digest)
        if target.exists():
            os.unlink(tmp)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if lfs:
        pointer = lfs_pointer(digest, size)
        return FileEntry(rel, size, git_blob_sha1(pointer), digest, True, len(pointer))
    assert sha1 is not None
    return FileEntry(rel, size, sha1.hexdigest(), digest, False)


def _check_against_cache(entry: FileEntry, src: Path) -> FileEntry:
    """A cache snapshot file links to blobs/<etag>: keep the upstream LFS classification
    and refuse a blob whose content does not match its name (a corrupt cache)."""
    etag = Path(os.readlink(src)).name if src.is_symlink() else ""
    if SHA256_RE.match(etag):
        if etag != entry.sha256:
            raise InputError([Problem(Location(str(src)), f"content sha256 does not match {etag}")])
        if not entry.lfs:
            pointer = lfs_pointer(entry.sha256, entry.size)
            return FileEntry(
                entry.path, entry.size, git_blob_sha1(pointer), entry.sha256, True, len(pointer)
            )
    elif SHA1_RE.match(etag) and entry.lfs:
        # Upstream kept it in plain git: recompute its git blob sha1 and check it.
        h = hashlib.sha1(b"blob %d\0" % entry.size)
        with open(src, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        if h.hexdigest() != etag:
            raise InputError(
                [Problem(Location(str(src)), f"content git sha1 does not match {etag}")]
            )
        return FileEntry(entry.path, entry.size, etag, entry.sha256, False)
    elif SHA1_RE.match(etag) and etag != entry.oid:
        raise InputError([Problem(Location(str(src)), f"content git sha1 does not match {etag}")])
    return entry


def _manifest_sha(files: list[FileEntry]) -> str:
    canon = json.dumps([[f.path, f.size, f.oid] for f in files], separators=(",", ":"))
    return hashlib.sha1(b"gpuprov-mirror-manifest\0" + canon.encode()).hexdigest()


def _parse_ref(revision: str) -> tuple[str, str]:
    """`main`, `refs/heads/x` -> branch; `refs/tags/x` -> tag."""
    if revision.startswith("refs/tags/"):
        return "tags", revision[len("refs/tags/") :]
    if revision.startswith("refs/heads/"):
        return "branches", revision[len("refs/heads/") :]
    return "branches", revision


def _clean_tmp(store: Path, older_than_s: float = 3600.0) -> None:
    """Remove staging leftovers of killed imports (old enough not to be a live import)."""
    now = time.time()
    for entry in (store / "tmp").iterdir():
        with contextlib.suppress(OSError):
            if now - entry.lstat().st_mtime > older_than_s:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()


def add_model(
    source: Path,
    store: Path,
    repo: str,
    revision: str | None = None,
    repo_type: str = "model",
) -> CommitInfo:
    """Import a directory (or a Hugging Face cache snapshot) as a commit of `repo` and
    point `revision` (default: main, and for a cache snapshot every cache ref naming its
    sha) at it. Atomic: on any failure nothing new is visible."""
    check_repo_id(repo, repo_type)
    store = Path(store)
    src = _detect_source(Path(source), revision)
    if revision is not None and not SHA1_RE.match(revision) and not REF_RE.match(revision):
        raise InputError([Problem(Location("--revision"), f"invalid revision name {revision!r}")])
    if revision is not None and SHA1_RE.match(revision) and revision != src.upstream_sha:
        raise InputError(
            [
                Problem(
                    Location("--revision"),
                    "a commit sha can only be given for a Hugging Face cache snapshot with that sha",
                )
            ]
        )
    for sub in ("tmp", "blobs/sha256", "repos"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    _clean_tmp(store)

    files: list[FileEntry] = []
    for rel, path in _walk(src.root):
        if any(part in ("", ".", "..") or "\\" in part for part in rel.split("/")):
            raise InputError([Problem(Location(str(path)), "unsafe file name")])
        try:
            entry = _import_file(store, path, rel)
        except OSError as exc:
            raise InputError(
                [Problem(Location(str(path)), f"cannot read: {exc.strerror or exc}")]
            ) from exc
        if src.upstream_sha:
            entry = _check_against_cache(entry, path)
        files.append(entry)
    if not files:
        raise InputError([Problem(Location(str(src.root)), "no files to import")])

    sha = src.upstream_sha or _manifest_sha(files)
    if revision is None or SHA1_RE.match(revision):
        ref_names = [r for r in src.upstream_refs if REF_RE.match(r)] or ["main"]
    else:
        ref_names = [revision]
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    rdir = repo_dir(store, repo, repo_type)
    commit_dir = rdir / "commits" / sha
    if not commit_dir.is_dir():
        stage = Path(tempfile.mkdtemp(dir=store / "tmp", prefix="commit-"))
        try:
            manifest = {
                "repo": repo,
                "repo_type": repo_type,
                "sha": sha,
                "refs": ref_names,
                "created_at": created,
                "source": "hf-cache" if src.upstream_sha else "directory",
                "files": [f.to_json() for f in files],
            }
            _write_atomic(stage / "manifest.json", json.dumps(manifest, indent=1).encode())
            commit_dir.parent.mkdir(parents=True, exist_ok=True)
            os.rename(stage, commit_dir)
            _fsync_dir(commit_dir.parent)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    refs_path = rdir / "refs.json"
    refs = read_refs(store, repo, repo_type) if refs_path.exists() else {"branches": {}, "tags": {}}
    for name in ref_names:
        kind, short = _parse_ref(name)
        refs[kind][short] = sha
    _write_atomic(refs_path, json.dumps(refs, indent=1, sort_keys=True).encode())
    info = read_manifest(store, repo, repo_type, sha)
    return CommitInfo(
        repo, repo_type, sha, tuple(ref_names), info.files, info.created_at, info.source
    )
