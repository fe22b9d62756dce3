"""The on-disk format of a bundle directory: names, the manifest, hashing, signing.

A bundle has one root of trust: `manifest.json` lists every file (path, size, sha256,
kind) and `manifest.json.asc` is a detached OpenPGP signature over it, made with the
site's bundle key. Everything else (export, verify, import) takes a manifest loaded
and checked here and never trusts a name or a size it did not vouch for.

    DIR/manifest.json  DIR/manifest.json.asc  DIR/keys/bundle.asc
    DIR/apt/<os-id>/   DIR/oci/   DIR/models/   DIR/wheels/

A differential manifest lists the FULL file set of the new bundle and names its base;
its directory holds only the files whose (path, sha256) the base does not have.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gpuprov.aptrepo import gpgv_status
from gpuprov.aptrepo.keys import load_key
from gpuprov.bundle.pipeline import BLOCK, advise_sequential, stream
from gpuprov.errors import GpuprovError, InputError, Location, Problem

FORMAT = "gpuprov-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.asc"
PUBLIC_KEY = "keys/bundle.asc"
APT_DIR, OCI_DIR, MODELS_DIR, WHEELS_DIR, KEYS_DIR = "apt", "oci", "models", "wheels", "keys"
RPM_DIR = "rpm"  # RHEL targets: a signed RPM repository per OS (gpuprov/bundle/dnfroot.py)
# Top-level directory -> kind. A file anywhere else has no kind and is refused.
KIND_BY_TOP = {APT_DIR: "apt", RPM_DIR: "rpm", OCI_DIR: "oci", MODELS_DIR: "model",
               WHEELS_DIR: "wheel", KEYS_DIR: "key"}  # fmt: skip
KINDS = frozenset(KIND_BY_TOP.values())
# Not listed in `files`: they are the manifest and its signature.
UNLISTED = frozenset({MANIFEST, SIGNATURE})

PATH_RE = re.compile(r"[A-Za-z0-9._+~@=-]+(/[A-Za-z0-9._+~@=-]+)*")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
MAX_MANIFEST_BYTES = 256 * 1024 * 1024  # a manifest of a million files is ~150 MB


class SignatureError(GpuprovError):
    """The manifest's signature is missing, bad, expired, revoked or by an unknown key.
    The bundle is untrusted (exit 1, like a damaged one)."""


def path_problem(path: str) -> str | None:
    """Why `path` is not an acceptable bundle path, or None. Relative POSIX only."""
    if not isinstance(path, str) or not PATH_RE.fullmatch(path):
        return "not a relative path of [A-Za-z0-9._+~@=-] names joined by '/'"
    if any(part in (".", "..") for part in path.split("/")):
        return "'.' and '..' components are not allowed"
    return None


def kind_of_path(path: str) -> str | None:
    """The kind of a bundle path by its top-level directory (None: not a bundle area)."""
    top, sep, _ = path.partition("/")
    return KIND_BY_TOP.get(top) if sep else None


@dataclass(frozen=True, order=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    kind: str

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "kind": self.kind}


def bundle_id(files: Iterable[FileEntry]) -> str:
    """sha256 of the canonical file list (sorted by path, compact JSON). Equal trees have
    equal ids, so a full bundle and base + differential of the same tree share one."""
    rows = [[f.path, f.size, f.sha256, f.kind] for f in sorted(files, key=lambda f: f.path)]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    format: str
    id: str
    created: str
    base: str | None
    files: tuple[FileEntry, ...] = field(default_factory=tuple)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}

    def to_json(self) -> str:
        doc = {
            "format": self.format,
            "id": self.id,
            "created": self.created,
            "base": self.base,
            "files": [f.as_dict() for f in sorted(self.files, key=lambda f: f.path)],
        }
        return json.dumps(doc, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str = MANIFEST) -> Manifest:
        """Parse and validate strictly; every problem is reported, each located."""
        where = Location(source)
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError([Problem(where, f"not valid JSON: {exc}")]) from None
        if not isinstance(doc, dict):
            raise InputError([Problem(where, "expected a JSON object")])
        problems: list[Problem] = []

        def bad(message: str) -> None:
            problems.append(Problem(where, message))

        expected = {"format", "id", "created", "base", "files"}
        if extra := sorted(set(doc) - expected):
            bad(f"unknown keys: {', '.join(extra)}")
        if missing := sorted(expected - set(doc)):
            raise InputError([Problem(where, f"missing keys: {', '.join(missing)}")])
        if doc["format"] != FORMAT:
            bad(f"format is {doc['format']!r}, expected {FORMAT!r}")
        for key in ("id", "base"):
            value = doc[key]
            if key == "base" and value is None:
                continue
            if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
                bad(f"{key} must be 64 lowercase hex digits, got {value!r}")
        created = doc["created"]
        if not isinstance(created, str) or not _is_iso_utc(created):
            bad(f"created must be an ISO 8601 UTC time, got {created!r}")
        files: list[FileEntry] = []
        seen: set[str] = set()
        if not isinstance(doc["files"], list):
            raise InputError([*problems, Problem(where, "files must be a list")])
        for index, item in enumerate(doc["files"]):
            entry = _entry(item, f"files[{index}]", bad)
            if entry is None:
                continue
            if entry.path in seen:
                bad(f"files[{index}]: {entry.path} is listed twice")
            seen.add(entry.path)
            files.append(entry)
        _check_no_file_dir_clash(seen, bad)
        if not problems and bundle_id(files) != doc["id"]:
            bad(f"id {doc['id']} does not match the file list (expected {bundle_id(files)})")
        if problems:
            raise InputError(problems)
        return cls(FORMAT, doc["id"], created, doc["base"], tuple(sorted(files)))


def _entry(item: object, at: str, bad: Callable[[str], None]) -> FileEntry | None:
    if not isinstance(item, dict) or set(item) != {"path", "size", "sha256", "kind"}:
        bad(f"{at}: expected an object with exactly path, size, sha256, kind")
        return None
    path, size, digest, kind = item["path"], item["size"], item["sha256"], item["kind"]
    ok = True
    if (why := path_problem(path)) is not None:
        bad(f"{at}: path {path!r}: {why}")
        ok = False
    elif path in UNLISTED:
        bad(f"{at}: {path} must not be listed in files")
        ok = False
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        bad(f"{at}: size must be an integer >= 0, got {size!r}")
        ok = False
    if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
        bad(f"{at}: sha256 must be 64 lowercase hex digits, got {digest!r}")
        ok = False
    if kind not in KINDS:
        bad(f"{at}: kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
        ok = False
    elif ok and kind_of_path(path) != kind:
        bad(f"{at}: {path} is under {path.split('/')[0]}/, which holds kind "
            f"{kind_of_path(path)!r}, not {kind!r}")  # fmt: skip
        ok = False
    return FileEntry(path, size, digest, kind) if ok else None


def _check_no_file_dir_clash(paths: set[str], bad: Callable[[str], None]) -> None:
    # "a/b" as a file and "a/b/c" as a file cannot both exist in one tree.
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if (parent := "/".join(parts[:i])) in paths:
                bad(f"{parent} is listed as a file and as the directory of {path}")


def _is_iso_utc(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", text):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def load_manifest(bundle_dir: Path) -> Manifest:
    """Read DIR/manifest.json (bounded, not through a symlink) and validate it."""
    path = bundle_dir / MANIFEST
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise InputError(
            [Problem(Location(str(path)), "no manifest here (not a bundle?)")]
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError([Problem(Location(str(path)), "not a regular file")])
    if st.st_size > MAX_MANIFEST_BYTES:
        raise InputError([Problem(Location(str(path)), f"{st.st_size} bytes: too large")])
    return Manifest.from_json(path.read_bytes(), source=str(path))


# ---- hashing -------------------------------------------------------------------------


def hash_file(path: Path, limit: int | None = None) -> tuple[int, str]:
    """(bytes read, sha256) of a regular file, refusing to follow a symlink."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        advise_sequential(fd)
        length = os.fstat(fd).st_size if limit is None else limit
        size = stream(fd, length, [digest])
        if limit is None:  # grown since the fstat: hash the rest too, every byte once
            while n := stream(fd, BLOCK, [digest]):
                size += n
    finally:
        os.close(fd)
    return size, digest.hexdigest()


def default_threads() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def scan_tree(
    bundle_dir: Path,
    kind_of: Callable[[str], str | None] = kind_of_path,
    *,
    threads: int | None = None,
) -> list[FileEntry]:
    """Every regular file under bundle_dir (except the manifest and its signature), hashed
    on threads. Symlinks, devices, bad names and files outside the kind areas are refused,
    all of them named in one error."""
    problems: list[Problem] = []
    found: list[tuple[str, Path]] = []

    def walk(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = f"{prefix}{entry.name}"
                where = Location(str(directory / entry.name))
                if not prefix and entry.name in UNLISTED:
                    continue
                if entry.is_symlink():
                    problems.append(Problem(where, "symlink (bundles hold regular files only)"))
                elif (why := path_problem(rel)) is not None:
                    problems.append(Problem(where, f"bad name: {why}"))
                elif entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), f"{rel}/")
                elif not entry.is_file(follow_symlinks=False):
                    problems.append(Problem(where, "not a regular file"))
                elif kind_of(rel) not in KINDS:
                    problems.append(Problem(where, "outside apt/, oci/, models/, wheels/, keys/"))
                else:
                    found.append((rel, Path(entry.path)))

    if not bundle_dir.is_dir():
        raise InputError([Problem(Location(str(bundle_dir)), "not a directory")])
    walk(bundle_dir, "")
    if problems:
        raise InputError(problems)
    with ThreadPoolExecutor(max_workers=threads or default_threads()) as pool:
        hashed = list(pool.map(lambda item: hash_file(item[1]), found))
    return [
        FileEntry(rel, size, digest, kind_of(rel) or "")
        for (rel, _), (size, digest) in zip(found, hashed, strict=True)
    ]


# ---- writing and signing -------------------------------------------------------------


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write through a temp name in the same directory, fsync, rename, fsync the dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, mode)
        except OSError as exc:  # FAT has no modes; some FUSE drivers refuse chmod outright
            if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
                raise
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (vfat through some kernels) refuse fsync on a directory
    finally:
        os.close(fd)


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_manifest(
    bundle_dir: Path,
    files: Iterable[FileEntry],
    base_id: str | None = None,
    *,
    created: str | None = None,
) -> Manifest:
    """Write DIR/manifest.json for files (atomically) and return it, validated by a
    round trip through from_json so nothing is written that the far side would refuse."""
    entries = tuple(sorted(files, key=lambda f: f.path))
    manifest = Manifest(FORMAT, bundle_id(entries), created or now_utc(), base_id, entries)
    text = manifest.to_json()
    Manifest.from_json(text, source=str(bundle_dir / MANIFEST))
    atomic_write(bundle_dir / MANIFEST, text.encode())
    return manifest


def export_public_key(bundle_dir: Path, key_home: Path, fingerprint: str | None = None) -> Path:
    """Write DIR/keys/bundle.asc (armored; informational, trust comes from the far side's
    own keyring). Call before scan_tree so it is listed."""
    key = load_key(key_home, fingerprint)
    dest = bundle_dir / PUBLIC_KEY
    atomic_write(dest, key.export_public_armored())
    return dest


def sign_manifest(
    bundle_dir: Path,
    key_home: Path,
    fingerprint: str | None = None,
    *,
    passphrase_file: Path | None = None,
) -> str:
    """Sign DIR/manifest.json into DIR/manifest.json.asc; returns the key's fingerprint."""
    key = load_key(key_home, fingerprint, passphrase_file=passphrase_file)
    target = bundle_dir / SIGNATURE
    tmp = bundle_dir / f".{SIGNATURE}.tmp"
    try:
        key.detach_sign(bundle_dir / MANIFEST, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(bundle_dir)
    return key.fingerprint


def verify_signature(bundle_dir: Path, keyring: Path) -> str:
    """Check DIR/manifest.json.asc over DIR/manifest.json against keyring only (binary
    or armored). Returns the signing primary key's fingerprint; raises SignatureError."""
    manifest, signature = bundle_dir / MANIFEST, bundle_dir / SIGNATURE
    for path in (manifest, signature):
        if not path.is_file() or path.is_symlink():
            raise SignatureError(f"{path}: missing (or not a regular file)")
    if not keyring.is_file():
        raise InputError([Problem(Location(str(keyring)), "keyring not found")])
    with tempfile.TemporaryDirectory(prefix="gpuprov-keyring-") as tmp:
        ring = _binary_keyring(keyring, Path(tmp))
        try:
            proc = gpgv_status.run(ring, [str(signature), str(manifest)])
        except gpgv_status.GpgvUnavailable as e:
            raise SignatureError(str(e)) from None
    return parse_gpgv_status(proc.returncode, proc.stdout, proc.stderr)


def parse_gpgv_status(returncode: int, status: str, stderr: str = "") -> str:
    """Judge gpgv's status output as the apt repositories are judged (gpgv_status: every
    signature good, by a key in the keyring, with a strong digest), plus exactly one
    signature. Returns the signing primary key's fingerprint."""
    sigs, _ = gpgv_status.parse_status(status)
    if len(sigs) > 1:
        raise SignatureError(f"{SIGNATURE}: holds more than one signature")
    if sigs and sigs[0].status == "ERRSIG" and sigs[0].no_pubkey:
        raise SignatureError(
            f"{MANIFEST}: signed by a key that is not in the keyring ({sigs[0].key})"
        )
    problem = gpgv_status.judge(returncode, status)
    if problem is not None:
        raise SignatureError(f"{MANIFEST}: {problem}")
    if not sigs:
        last = stderr.strip().splitlines()[-1:] or ["no valid signature"]
        raise SignatureError(f"{MANIFEST}: signature not good: {last[0]}")
    return sigs[0].primary or sigs[0].fingerprint


def _binary_keyring(keyring: Path, home: Path) -> Path:
    # gpgv reads only binary keyrings; an armored .asc key is dearmored into the temp home.
    head = keyring.read_bytes()[:64]
    if not head.lstrip().startswith(b"-----BEGIN PGP"):
        return keyring.absolute()
    out = home / "keyring.gpg"
    proc = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--dearmor",
            "--output",
            str(out),
            str(keyring),
        ],  # fmt: skip
        capture_output=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise InputError([Problem(Location(str(keyring)), "armored keyring could not be read")])
    return out


# ---- differential bundles ------------------------------------------------------------


def carried_files(manifest: Manifest, base: Manifest | None) -> list[FileEntry]:
    """The entries the bundle directory itself must hold: all of them for a full bundle,
    those whose (path, sha256) the base lacks for a differential."""
    if manifest.base is None:
        return list(manifest.files)
    if base is None:
        raise InputError(f"bundle {manifest.id[:12]} is differential: its base is needed")
    if base.id != manifest.base:
        raise InputError(
            f"bundle {manifest.id[:12]} applies to base {manifest.base[:12]}, not to {base.id[:12]}"
        )
    have = {(f.path, f.sha256) for f in base.files}
    return [f for f in manifest.files if (f.path, f.sha256) not in have]


def missing_from_tree(
    manifest: Manifest, bundle_dir: Path, base_manifest: Manifest | None = None
) -> list[FileEntry]:
    """Entries the directory should hold but does not (as regular files of that size)."""
    missing = []
    for entry in carried_files(manifest, base_manifest):
        try:
            st = (bundle_dir / entry.path).lstat()
        except (FileNotFoundError, NotADirectoryError):
            missing.append(entry)
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            missing.append(entry)
    return missing
