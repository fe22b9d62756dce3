"""Check a bundle on media (or a bundle directory) before anything is imported.

Order matters: the signature first (an untrusted manifest vouches for nothing, so its
files are not even looked at), then the manifest's own validity (absolute and `..`
names), then the tree (symlinks, unlisted files, missing and short chunks), then every
byte, hashed once, files on threads: each file is reassembled from its chunks and its
sha256 compared with the signed manifest; the media index only names the bad chunk.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gpuprov.bundle import media as m
from gpuprov.bundle.layout import (
    BLOCK,
    MANIFEST,
    SIGNATURE,
    FileEntry,
    Manifest,
    SignatureError,
    carried_files,
    default_threads,
    path_problem,
    verify_signature,
)
from gpuprov.bundle.pipeline import advise_sequential, stream
from gpuprov.errors import InputError, Location, Problem

CONTROL_FILES = frozenset({MANIFEST, SIGNATURE, m.MEDIA_INDEX})


@dataclass(frozen=True, order=True)
class Finding:
    name: str  # the path on the media the finding is about
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


@dataclass
class VerifyReport:
    media: str
    bundle: str | None = None
    base: str | None = None
    signer: str | None = None
    files: int = 0
    bytes_hashed: int = 0
    not_carried: int = 0  # differential, no base given: files expected from the base
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, object]:
        return {
            "media": self.media,
            "ok": self.ok,
            "bundle": self.bundle,
            "base": self.base,
            "signer": self.signer,
            "files": self.files,
            "bytes_hashed": self.bytes_hashed,
            "not_carried": self.not_carried,
            "findings": [{"name": f.name, "message": f.message} for f in self.findings],
            "seconds": self.seconds,
        }


def load_trusted(media: Path, keyring: Path, report: VerifyReport) -> Manifest | None:
    """The manifest, if its signature is good and it parses; else findings, None."""
    if not (media / MANIFEST).is_file():
        unfinished = (media / m.JOURNAL).exists()
        why = "an unfinished export (run it again)" if unfinished else "not a bundle?"
        report.findings.append(Finding(MANIFEST, f"missing: {why}"))
        return None
    try:
        report.signer = verify_signature(media, keyring)
    except SignatureError as exc:
        report.findings.append(Finding(SIGNATURE, str(exc)))
        return None
    try:
        manifest = Manifest.from_json((media / MANIFEST).read_bytes(), source=MANIFEST)
    except InputError as exc:
        report.findings.extend(Finding(MANIFEST, p.message) for p in exc.problems)
        return None
    report.bundle, report.base = manifest.id, manifest.base
    return manifest


def _walk(media: Path, report: VerifyReport) -> dict[str, int]:
    """Every regular file under media (relative name -> size); everything else a finding."""
    found: dict[str, int] = {}

    def walk(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                if entry.is_symlink():
                    report.findings.append(Finding(rel, "symlink (not allowed in a bundle)"))
                elif (why := path_problem(rel)) is not None:
                    report.findings.append(Finding(rel, f"bad name: {why}"))
                elif entry.is_dir(follow_symlinks=False):
                    walk(Path(entry.path), f"{rel}/")
                elif not entry.is_file(follow_symlinks=False):
                    report.findings.append(Finding(rel, "not a regular file"))
                else:
                    found[rel] = entry.stat(follow_symlinks=False).st_size

    walk(media, "")
    return found


def verify_media(
    media: Path,
    keyring: Path,
    *,
    base: Manifest | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify the bundle at media. Bad arguments raise InputError; damage is reported."""
    started = time.monotonic()
    if not media.is_dir():
        raise InputError([Problem(Location(str(media)), "not a directory")])
    if not keyring.is_file():
        raise InputError([Problem(Location(str(keyring)), "keyring not found")])
    report = VerifyReport(media=str(media))
    manifest = load_trusted(media, keyring, report)
    if manifest is None:
        report.seconds = round(time.monotonic() - started, 3)
        return report
    index = None
    try:
        index = m.MediaIndex.load(media, manifest)
    except InputError as exc:
        report.findings.extend(Finding(m.MEDIA_INDEX, p.message) for p in exc.problems)
    size = index.chunk_size if index else None
    present = _walk(media, report)

    if manifest.base is not None and base is not None:
        carried = carried_files(manifest, base)  # a wrong base is bad input (InputError)
    elif manifest.base is not None:
        carried = [e for e in manifest.files if any(n in present for n in m.chunk_names(e, size))]
        report.not_carried = len(manifest.files) - len(carried)
    else:
        carried = list(manifest.files)

    expected: set[str] = set(CONTROL_FILES)
    whole: list[tuple[FileEntry, list[str]]] = []
    for entry in carried:
        names = m.chunk_names(entry, size)
        expected.update(names)
        complete = True
        for i, name in enumerate(names):
            length = m.chunk_range(entry, size, i)[1]
            what = f"chunk {i + 1} of {len(names)} of {entry.path}" if len(names) > 1 else ""
            if name not in present:
                report.findings.append(Finding(name, f"missing {what}".rstrip()))
                complete = False
            elif present[name] != length:
                word = "short" if present[name] < length else "too long"
                report.findings.append(
                    Finding(name, f"{word}: {present[name]} bytes, expected {length} {what}")
                )
                complete = False
        if complete:
            whole.append((entry, names))
    for name in sorted(set(present) - expected):
        report.findings.append(Finding(name, "unlisted file (not in the signed manifest)"))
    split = index.split if index else {}

    def check(item: tuple[FileEntry, list[str]]) -> list[Finding]:
        entry, names = item
        digest = _hash_chunks(media, names, progress)
        if digest == entry.sha256:
            return []
        if len(names) > 1 and entry.path in split:
            # Only a damaged file is read a second time, to name its bad chunks.
            bad = [
                Finding(name, f"sha256 differs (chunk {i + 1} of {len(names)} of {entry.path})")
                for i, name in enumerate(names)
                if _hash_chunks(media, [name], None) != split[entry.path][i]
            ]
            if bad:
                return bad
        return [Finding(names[0], f"sha256 {digest} differs from the manifest's {entry.sha256}")]

    with ThreadPoolExecutor(max_workers=threads or default_threads()) as pool:
        for found in pool.map(check, sorted(whole, key=lambda w: -w[0].size)):
            report.findings.extend(found)
    report.files = len(carried)
    report.bytes_hashed = sum(e.size for e, _ in whole)
    report.findings.sort()
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _hash_chunks(media: Path, names: list[str], progress: Callable[[int], None] | None) -> str:
    """sha256 of the file reassembled from its chunks, each byte read and hashed once."""
    whole = hashlib.sha256()
    for name in names:
        fd = os.open(media / name, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{name}: not a regular file")
            advise_sequential(fd)
            stream(fd, st.st_size, [whole], None, progress)
            # Bytes appended since the walk are hashed too (and then fail the sha256).
            while stream(fd, BLOCK, [whole], None, progress):
                pass
        finally:
            os.close(fd)
    return whole.hexdigest()
