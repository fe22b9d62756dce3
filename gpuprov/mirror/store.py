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
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gpuprov.errors import InputError, Location, Problem

REPO_TYPES = ("model", "dataset", "space")
# Used with fullmatch only: `$` would also match before a trailing newline.
SHA1_RE = re.compile(r"[0-9a-f]{40}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")

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
# The store is served by an unprivileged user while an operator (root) writes it: what the
# server reads is world-readable, whatever the importer's umask (tmp/ stays private).
DIR_MODE = 0o755
FILE_MODE = 0o644
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
    if len(parts) != 2 or not all(NAME_RE.fullmatch(p) and ".." not in p for p in parts):
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


def _mkdirs(path: Path) -> None:
    """mkdir -p with DIR_MODE on every directory it creates, whatever the umask."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
            os.chmod(d, DIR_MODE)


def _write_atomic(path: Path, data: bytes) -> None:
    _mkdirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)  # mkstemp makes it 0600
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
    # Symlinks may point anywhere below this directory and nowhere else: the source
    # itself, or for a cache snapshot its cache repo dir (snapshot files link to ../../blobs).
    tree: Path


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symlink"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _open_regular(path: Path) -> int:
    """Open a regular file for reading without following a final symlink and without
    blocking on a FIFO swapped in after the scan; anything else raises InputError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InputError([Problem(Location(str(path)), f"{_kind(st.st_mode)}, not a regular file")])
    return fd


def _read_small(path: Path, limit: int = 4096) -> str:
    """A cache ref file: regular, small, not followed if it is a link."""
    try:
        with os.fdopen(_open_regular(path), "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError as exc:
        raise InputError(
            [Problem(Location(str(path)), f"cannot read: {exc.strerror or exc}")]
        ) from exc


def _check_revision(revision: str | None) -> None:
    # Checked before the revision names a file under refs/: no `..`, no newline.
    if revision is None or SHA1_RE.fullmatch(revision):
        return
    if not REF_RE.fullmatch(revision) or any(
        part in ("", ".", "..") for part in revision.split("/")
    ):
        raise InputError([Problem(Location("--revision"), f"invalid revision name {revision!r}")])


def _detect_source(source: Path, revision: str | None) -> _Source:
    """A plain directory, a cache snapshot dir (…/models--o--n/snapshots/<sha>), or a cache
    repo dir (…/models--o--n, resolved through refs/<revision or main>)."""
    _check_revision(revision)
    source = source.resolve()
    if not source.is_dir():
        raise InputError([Problem(Location(str(source)), "model source is not a directory")])
    if (source / "snapshots").is_dir() and (source / "refs").is_dir():
        ref = revision or "main"
        ref_file = source / "refs" / ref
        if SHA1_RE.fullmatch(ref):
            sha = ref
        elif ref_file.is_file():
            sha = _read_small(ref_file).strip()
            if not SHA1_RE.fullmatch(sha):
                raise InputError(
                    [Problem(Location(str(ref_file)), f"expected a commit sha, found {sha!r:.60}")]
                )
        else:
            raise InputError(
                [
                    Problem(
                        Location(str(ref_file)), f"no ref {ref!r} in this Hugging Face cache repo"
                    )
                ]
            )
        snap = source / "snapshots" / sha
        if snap.is_symlink() or not snap.is_dir():
            raise InputError([Problem(Location(str(snap)), "snapshot directory missing")])
        source = snap
    if SHA1_RE.fullmatch(source.name) and source.parent.name == "snapshots":
        cache_repo = source.parent.parent
        refs_dir = cache_repo / "refs"
        refs = []
        if refs_dir.is_dir() and not refs_dir.is_symlink():
            for dirpath, _dirs, names in os.walk(refs_dir):
                for name in sorted(names):
                    ref_file = Path(dirpath) / name
                    if not stat.S_ISREG(ref_file.lstat().st_mode):
                        continue  # a ref is a small regular file; nothing else is read
                    if _read_small(ref_file).strip() == source.name:
                        refs.append(ref_file.relative_to(refs_dir).as_posix())
        return _Source(source, source.name, tuple(sorted(refs)), cache_repo)
    return _Source(source, None, (), source)


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    def unreadable(exc: OSError) -> None:
        raise InputError(
            [Problem(Location(str(exc.filename)), f"cannot read: {exc.strerror or exc}")]
        )

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if rel_dir + d not in SKIP_DIRS)
        # Directory symlinks are not followed: listed as entries, refused by _scan.
        for name in sorted(filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]):
            yield rel_dir + name, Path(dirpath) / name


@dataclass(frozen=True)
class _SourceFile:
    rel: str  # path in the repo
    path: Path  # as found in the source (a cache snapshot's files are symlinks)
    real: Path  # the regular file read: path itself, or its symlink target in the tree


def _scan(src: _Source) -> list[_SourceFile]:
    """Every file to import, checked before anything is copied: a model directory is
    untrusted input (git keeps symlinks), so a symlink may only point at a regular file
    inside the source tree, and every other non-regular file is refused. Each offender
    is named; one bad file refuses the whole import."""
    tree = src.tree.resolve()
    out: list[_SourceFile] = []
    problems: list[Problem] = []
    for rel, path in _walk(src.root):
        where = Location(str(path))
        if any(part in ("", ".", "..") or "\\" in part for part in rel.split("/")):
            problems.append(Problem(where, "unsafe file name"))
            continue
        try:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path)
                real = Path(os.path.realpath(path))
                if not real.is_relative_to(tree):
                    problems.append(
                        Problem(where, f"symlink to {target!r} leaves the source tree {tree}")
                    )
                    continue
                st = real.stat()
                if not stat.S_ISREG(st.st_mode):
                    problems.append(
                        Problem(where, f"symlink to {target!r}: {_kind(st.st_mode)}, not a file")
                    )
                    continue
                out.append(_SourceFile(rel, path, real))
            elif stat.S_ISREG(st.st_mode):
                out.append(_SourceFile(rel, path, path))
            else:
                problems.append(Problem(where, f"{_kind(st.st_mode)}, not a regular file"))
        except OSError as exc:  # a dangling link, a loop, a file removed meanwhile
            problems.append(Problem(where, f"cannot read: {exc.strerror or exc}"))
    if problems:
        raise InputError(problems)
    return out


def _import_file(store: Path, src: Path, rel: str) -> FileEntry:
    """Copy one file into blobs/ while hashing it; the blob appears by rename only. Reads
    exactly the size the file had when opened: a file that grows or shrinks is refused."""
    tmp_dir = store / "tmp"
    sha256, sha1 = hashlib.sha256(), None
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="blob-")
    try:
        with os.fdopen(_open_regular(src), "rb") as fin, os.fdopen(fd, "wb") as fout:
            size = os.fstat(fin.fileno()).st_size
            lfs = is_lfs(rel, size)
            if not lfs:
                sha1 = hashlib.sha1(b"blob %d\0" % size)
            left = size
            while left and (chunk := fin.read(min(CHUNK, left))):
                sha256.update(chunk)
                if sha1 is not None:
                    sha1.update(chunk)
                fout.write(chunk)
                left -= len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
            if left or fin.read(1):
                raise InputError([Problem(Location(str(src)), "file changed while importing")])
        digest = sha256.hexdigest()
        target = blob_path(store, digest)
        if target.exists():
            os.unlink(tmp)
        else:
            _mkdirs(target.parent)
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


def _check_against_cache(entry: FileEntry, src: Path, real: Path) -> FileEntry:
    """A cache snapshot file links to blobs/<etag>: keep the upstream LFS classification
    and refuse a blob whose content does not match its name (a corrupt cache)."""
    etag = Path(os.readlink(src)).name if src.is_symlink() else ""
    if SHA256_RE.fullmatch(etag):
        if etag != entry.sha256:
            raise InputError([Problem(Location(str(src)), f"content sha256 does not match {etag}")])
        if not entry.lfs:
            pointer = lfs_pointer(entry.sha256, entry.size)
            return FileEntry(
                entry.path, entry.size, git_blob_sha1(pointer), entry.sha256, True, len(pointer)
            )
    elif SHA1_RE.fullmatch(etag) and entry.lfs:
        # Upstream kept it in plain git: recompute its git blob sha1 and check it.
        h = hashlib.sha1(b"blob %d\0" % entry.size)
        with os.fdopen(_open_regular(real), "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        if h.hexdigest() != etag:
            raise InputError(
                [Problem(Location(str(src)), f"content git sha1 does not match {etag}")]
            )
        return FileEntry(entry.path, entry.size, etag, entry.sha256, False)
    elif SHA1_RE.fullmatch(etag) and etag != entry.oid:
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
    if revision is not None and SHA1_RE.fullmatch(revision) and revision != src.upstream_sha:
        raise InputError(
            [
                Problem(
                    Location("--revision"),
                    "a commit sha can only be given for a Hugging Face cache snapshot with that sha",
                )
            ]
        )
    sources = _scan(src)  # every refusal before the first byte is copied
    if not sources:
        raise InputError([Problem(Location(str(src.root)), "no files to import")])
    for sub in ("blobs/sha256", "repos"):
        _mkdirs(store / sub)
    (store / "tmp").mkdir(mode=0o700, exist_ok=True)  # staging: the server never reads it
    _clean_tmp(store)

    files: list[FileEntry] = []
    for f in sources:
        try:
            entry = _import_file(store, f.real, f.rel)
        except OSError as exc:
            raise InputError(
                [Problem(Location(str(f.path)), f"cannot read: {exc.strerror or exc}")]
            ) from exc
        if src.upstream_sha:
            entry = _check_against_cache(entry, f.path, f.real)
        files.append(entry)

    sha = src.upstream_sha or _manifest_sha(files)
    if revision is None or SHA1_RE.fullmatch(revision):
        ref_names = [r for r in src.upstream_refs if REF_RE.fullmatch(r)] or ["main"]
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
            os.chmod(stage, DIR_MODE)  # mkdtemp makes it 0700
            _mkdirs(commit_dir.parent)
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
