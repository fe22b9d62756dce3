"""Copy a signed bundle directory onto removable media: one read pass, hashed while
copying, chunked on FAT32, resumable.

Every chunk is written to a temp name, fsynced and renamed, then recorded (name and
sha256) in a journal on the media. A re-run after kill -9 or an unplugged stick hashes
each chunk already there against the journal (or, for unsplit files, the manifest) and
copies only what is missing or wrong. manifest.json and its signature are written LAST,
after every directory is fsynced: media without a manifest is visibly unfinished.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from gpuprov.bundle import media as m
from gpuprov.bundle.layout import (
    MANIFEST,
    SIGNATURE,
    FileEntry,
    Manifest,
    atomic_write,
    default_threads,
    fsync_dir,
    load_manifest,
)
from gpuprov.bundle.pipeline import advise_sequential, drop_cached, stream
from gpuprov.errors import GpuprovError, InputError, Location, Problem

Progress = Callable[[int], None]  # called with the number of bytes just processed
JOURNAL_HEAD = "gpuprov-export-journal/1"
# Left alone when deciding whether the target is empty (mkfs leaves them).
IGNORED_ON_EMPTY_MEDIA = frozenset({"lost+found", "System Volume Information"})


class ExportError(GpuprovError):
    """The copy could not be completed (source differs from its manifest, I/O error)."""


@dataclass
class ExportResult:
    bundle: str
    filesystem: str
    chunk_size: int | None
    files: int
    chunks: int
    bytes_total: int
    bytes_written: int  # copied from the source in this run
    bytes_reused: int  # already on the media, hashed and found good
    seconds: float
    space_checked: bool = True  # False: the filesystem does not report its free space

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _tmp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp")


class _Journal:
    """Append-only record of finished chunks. A torn last line (kill -9) is ignored."""

    def __init__(self, path: Path, bundle: str, chunk_size: int | None):
        self.path = path
        self.head = f"{JOURNAL_HEAD} {bundle} {chunk_size or 0}"
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.offset = 0

    def read(self) -> dict[str, str]:
        try:
            lines = self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return {}
        if not lines:
            return {}
        if lines[0] != self.head:
            raise InputError(
                [
                    Problem(
                        Location(str(self.path)),
                        f"an unfinished export of another bundle or chunk size is here "
                        f"({lines[0][len(JOURNAL_HEAD) + 1 :]!r}); use an empty directory "
                        "or the same --chunk-size as before",
                    )
                ]
            )
        found: dict[str, str] = {}
        for line in lines[1:]:
            name, _, digest = line.rpartition(" ")
            if m.SHA256_RE.fullmatch(digest) and re.fullmatch(r"[A-Za-z0-9._+~@=/-]+", name):
                found[name] = digest
        return found

    def open(self) -> None:
        # Positioned writes, not O_APPEND: fusefat corrupts a file appended to while
        # other files on the volume grow (seen here: NUL runs, then EPERM).
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self.offset = os.fstat(self.fd).st_size
        if self.offset == 0:
            self._write(self.head + "\n")

    def _write(self, text: str) -> None:
        assert self.fd is not None, "journal not open"
        data = text.encode("ascii")
        os.pwrite(self.fd, data, self.offset)
        self.offset += len(data)

    def record(self, name: str, digest: str) -> None:
        with self.lock:
            self._write(f"{name} {digest}\n")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class _Counters:
    written: int = 0
    reused: int = 0
    chunks: int = 0


def _present_files(source: Path, manifest: Manifest) -> list[FileEntry]:
    """The manifest entries the source directory holds (all, unless differential)."""
    present, missing = [], []
    for entry in manifest.files:
        try:
            st = (source / entry.path).lstat()
        except (FileNotFoundError, NotADirectoryError):
            missing.append(entry)
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
            raise InputError(
                [
                    Problem(
                        Location(str(source / entry.path)),
                        f"not a regular file of {entry.size} bytes as the manifest says",
                    )
                ]
            )
        present.append(entry)
    if missing and manifest.base is None:
        raise InputError(
            [
                Problem(Location(str(source / e.path)), "listed in the manifest but missing")
                for e in missing
            ]  # fmt: skip
        )
    return present


def _choose_chunk_size(filesystem: str, chunk_size: int | None) -> int | None:
    small = filesystem in m.SMALL_FILE_FILESYSTEMS or filesystem == "unknown"
    if chunk_size is None:
        return m.FAT32_CHUNK if small else None
    if chunk_size < 1 or (small and chunk_size > m.FAT32_MAX_FILE):
        raise InputError(f"--chunk-size {chunk_size} must be 1..{m.FAT32_MAX_FILE} on {filesystem}")
    return chunk_size


def _check_target(dest: Path, manifest: Manifest, names: list[str], filesystem: str) -> None:
    if not dest.is_dir() or dest.is_symlink():
        raise InputError([Problem(Location(str(dest)), "not a directory (mount the media first)")])
    ours = (dest / m.JOURNAL).exists() or (dest / m.MEDIA_INDEX).exists()
    if (dest / MANIFEST).is_file() and not (dest / MANIFEST).is_symlink():
        there = load_manifest(dest)
        if there.id != manifest.id:
            raise InputError(
                [Problem(Location(str(dest)), f"holds another bundle ({there.id[:12]})")]
            )
        ours = True
    others = sorted(p.name for p in dest.iterdir() if p.name not in IGNORED_ON_EMPTY_MEDIA)
    if others and not ours:
        raise InputError(
            [
                Problem(
                    Location(str(dest)),
                    f"not empty ({', '.join(others[:5])}); export into an empty directory",
                )
            ]  # fmt: skip
        )
    if filesystem in m.CASELESS_FILESYSTEMS:
        seen: dict[str, str] = {}
        for name in [*names, MANIFEST, SIGNATURE, m.MEDIA_INDEX]:
            if (other := seen.setdefault(name.lower(), name)) != name:
                raise InputError(f"{name} and {other} are one name on {filesystem}")


def export_bundle(
    source: Path,
    dest: Path,
    *,
    chunk_size: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    filesystem: str | None = None,
) -> ExportResult:
    """Copy the bundle at source onto dest (a mounted media directory)."""
    started = time.monotonic()
    manifest = load_manifest(source)
    signature = source / SIGNATURE
    if not signature.is_file() or signature.is_symlink():
        raise InputError([Problem(Location(str(signature)), "missing: sign the bundle first")])
    entries = _present_files(source, manifest)
    fs = filesystem or m.filesystem_of(dest)
    size = _choose_chunk_size(fs, chunk_size)
    plans = [(e, m.chunk_names(e, size)) for e in entries]
    _check_target(dest, manifest, [n for _, names in plans for n in names], fs)

    journal = _Journal(dest / m.JOURNAL, manifest.id, size)
    known = journal.read()
    known.update(_index_hashes(dest, manifest, size))
    for entry, names in plans:
        if len(names) == 1:
            known[names[0]] = entry.sha256  # an unsplit file's hash is the manifest's
    space_checked = _check_space(dest, plans, size)

    counters = _Counters()
    lock = threading.Lock()
    split: dict[str, list[str]] = {}
    journal.open()
    try:

        def one(plan: tuple[FileEntry, list[str]]) -> None:
            entry, names = plan
            hashes = _copy_file(source, dest, entry, names, size, known, journal, counters,
                                lock, progress)  # fmt: skip
            if len(names) > 1:
                with lock:
                    split[entry.path] = hashes

        # Largest first: the long copies start at once and the small ones fill in.
        ordered = sorted(plans, key=lambda p: -p[0].size)
        with ThreadPoolExecutor(max_workers=threads or default_threads()) as pool:
            for future in [pool.submit(one, plan) for plan in ordered]:
                future.result()
    finally:
        journal.close()

    directories = {dest} | {(dest / n).parent for _, names in plans for n in names}
    for directory in sorted(directories, key=lambda d: -len(d.parts)):
        fsync_dir(directory)
    index = m.MediaIndex(manifest.id, fs, size, split)
    atomic_write(dest / m.MEDIA_INDEX, index.to_json().encode())
    atomic_write(dest / SIGNATURE, signature.read_bytes())
    atomic_write(dest / MANIFEST, (source / MANIFEST).read_bytes())  # last: "done" marker
    (dest / m.JOURNAL).unlink(missing_ok=True)
    fsync_dir(dest)
    return ExportResult(
        bundle=manifest.id,
        filesystem=fs,
        chunk_size=size,
        files=len(entries),
        chunks=counters.chunks,
        bytes_total=sum(e.size for e in entries),
        bytes_written=counters.written,
        bytes_reused=counters.reused,
        seconds=round(time.monotonic() - started, 3),
        space_checked=space_checked,
    )


def _index_hashes(dest: Path, manifest: Manifest, size: int | None) -> dict[str, str]:
    """Chunk hashes of a finished earlier export of the same bundle (re-run = re-check)."""
    try:
        index = m.MediaIndex.load(dest, manifest)
    except InputError:
        return {}
    if index is None or index.chunk_size != size:
        return {}
    return {
        f"{path}.part{i:04d}": digest
        for path, hashes in index.split.items()
        for i, digest in enumerate(hashes)
    }


def _check_space(dest: Path, plans: list[tuple[FileEntry, list[str]]], size: int | None) -> bool:
    """Refuse before the first byte if the media is too small; False: cannot tell."""
    free, unit = m.free_bytes(dest)
    needed = 0
    for entry, names in plans:
        for i, name in enumerate(names):
            length = m.chunk_range(entry, size, i)[1]
            try:
                if (dest / name).lstat().st_size == length:
                    continue  # there already; counted as reusable, checked when reached
            except (FileNotFoundError, NotADirectoryError):
                pass
            needed += -(-length // unit) * unit
    needed += 16 * unit + sum(len(e.path) for e, _ in plans) * 2  # manifest, index, dirs
    if free is None:
        return False
    if needed > free:
        raise InputError(
            [
                Problem(
                    Location(str(dest)),
                    f"needs {needed:,} bytes, {free:,} free: use larger media or free some space",
                )
            ]  # fmt: skip
        )
    return True


def _copy_file(
    source: Path,
    dest: Path,
    entry: FileEntry,
    names: list[str],
    size: int | None,
    known: dict[str, str],
    journal: _Journal,
    counters: _Counters,
    lock: threading.Lock,
    progress: Progress | None,
) -> list[str]:
    """Copy (or re-check) every chunk of one file in order, hashing the whole file on
    the way. Returns the chunk hashes. Refuses a source that differs from the manifest."""
    whole = hashlib.sha256()
    single = len(names) == 1  # then the chunk IS the file: hash each byte once, not twice
    hashes: list[str] = []
    fd = os.open(source / entry.path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        advise_sequential(fd)
        for i, name in enumerate(names):
            offset, length = m.chunk_range(entry, size, i)
            target = dest / name
            reused = _reuse(target, length, known.get(name), None if single else whole)
            if reused is not None:
                digest = known[name]
                whole = reused
                with lock:
                    counters.reused += length
                    counters.chunks += 1
                _tmp_name(target).unlink(missing_ok=True)
            else:
                os.lseek(fd, offset, os.SEEK_SET)
                digest, chunk_hash = _copy_chunk(
                    fd, target, length, None if single else whole, progress
                )
                if single:
                    whole = chunk_hash
                journal.record(name, digest)
                with lock:
                    counters.written += length
                    counters.chunks += 1
            if progress and reused is not None:
                progress(length)
            hashes.append(digest)
        if os.lseek(fd, 0, os.SEEK_END) != entry.size:
            raise ExportError(f"{source / entry.path}: changed size while being copied")
    finally:
        os.close(fd)
    if whole.hexdigest() != entry.sha256:
        for name in names:
            (dest / name).unlink(missing_ok=True)
        raise ExportError(
            f"{source / entry.path}: sha256 {whole.hexdigest()} differs from the manifest's "
            f"{entry.sha256}; the bundle directory was changed after it was built"
        )
    return hashes


def _reuse(
    target: Path, length: int, expected: str | None, whole: hashlib._Hash | None
) -> hashlib._Hash | None:
    """If target already holds exactly the expected chunk: the whole-file hash fed with
    its bytes (a copy; `whole` itself is untouched so a bad chunk costs nothing). With
    whole None the chunk is the whole file, and its own hash is returned."""
    if expected is None:
        return None
    try:
        st = target.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size != length:
        return None
    chunk = hashlib.sha256()
    trial = whole.copy() if whole is not None else None
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        advise_sequential(fd)
        read = stream(fd, length, [chunk] if trial is None else [chunk, trial])
    finally:
        os.close(fd)
    if read != length or chunk.hexdigest() != expected:
        return None
    return trial if trial is not None else chunk


def _copy_chunk(
    fd: int,
    target: Path,
    length: int,
    whole: hashlib._Hash | None,
    progress: Progress | None,
) -> tuple[str, hashlib._Hash]:
    """Read length bytes from fd once: hash them (chunk and whole file, on a second
    thread) and write them to target through a temp name, fsynced, then renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(target)
    chunk = hashlib.sha256()
    # A temp file left by a killed run is removed, not truncated: fusefat refuses
    # O_TRUNC on an existing file (EPERM), and O_EXCL never writes through a planted link.
    tmp.unlink(missing_ok=True)
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        hashes = [chunk] if whole is None else [chunk, whole]
        copied = stream(fd, length, hashes, out, progress)
        if copied != length:
            raise ExportError(f"{target.name}: source ended {length - copied} bytes early")
        os.fsync(out)
        drop_cached(out)
    except BaseException:
        os.close(out)
        tmp.unlink(missing_ok=True)
        raise
    os.close(out)
    os.replace(tmp, target)
    return chunk.hexdigest(), chunk
