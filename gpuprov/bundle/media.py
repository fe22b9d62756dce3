"""A bundle as it lies on removable media: the chunk rule and the media index.

On FAT32 no file may reach 2^32 - 1 bytes, so a larger bundle file is stored as
`<path>.part0000`, `<path>.part0001`, ... of `chunk_size` bytes each (the last one
shorter). `media.json` records the chunk size and each chunk's sha256 so a bad chunk is
named, and a resumed export can skip good ones. The media index is NOT a root of trust:
verify reassembles every file and checks its sha256 against the signed manifest; the
index only says where the bytes are and which chunk to blame.

    {"format": "gpuprov-media/1", "bundle": "<id>", "filesystem": "vfat",
     "chunk_size": 4293918720 | null, "split": {"<path>": ["<chunk sha256>", ...]}}
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gpuprov.bundle.layout import SHA256_RE, FileEntry, Manifest
from gpuprov.errors import InputError, Location, Problem

MEDIA_INDEX = "media.json"
MEDIA_FORMAT = "gpuprov-media/1"
JOURNAL = ".gpuprov-export.journal"  # present only while an export is unfinished
FAT32_MAX_FILE = 2**32 - 1
# Below FAT32's limit and a whole number of MiB, so chunks stay block-aligned.
FAT32_CHUNK = 2**32 - 2**20
PART_RE = re.compile(r"\.part(\d{4})")
MAX_CHUNKS = 10_000  # .part0000 .. .part9999
MAX_INDEX_BYTES = 64 * 1024 * 1024
# Filesystems whose largest file is below 4 GiB.
# fuse.fusefat: the FUSE FAT driver, where the kernel has no vfat module (the tests).
SMALL_FILE_FILESYSTEMS = frozenset({"vfat", "msdos", "fat", "fat32", "fuse.fusefat"})
# Filesystems that compare names without case.
CASELESS_FILESYSTEMS = SMALL_FILE_FILESYSTEMS | {"exfat", "ntfs", "ntfs3", "fuseblk"}


def chunk_count(size: int, chunk_size: int | None) -> int:
    if chunk_size is None or size <= chunk_size:
        return 1
    return -(-size // chunk_size)


def chunk_names(entry: FileEntry, chunk_size: int | None) -> list[str]:
    """Where the bytes of entry lie on the media, in order."""
    n = chunk_count(entry.size, chunk_size)
    if n == 1:
        return [entry.path]
    return [f"{entry.path}.part{i:04d}" for i in range(n)]


def chunk_range(entry: FileEntry, chunk_size: int | None, index: int) -> tuple[int, int]:
    """(offset, length) of chunk index of entry."""
    if chunk_count(entry.size, chunk_size) == 1:
        return 0, entry.size
    assert chunk_size is not None
    start = index * chunk_size
    return start, min(chunk_size, entry.size - start)


@dataclass
class MediaIndex:
    bundle: str
    filesystem: str
    chunk_size: int | None
    split: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {
            "format": MEDIA_FORMAT,
            "bundle": self.bundle,
            "filesystem": self.filesystem,
            "chunk_size": self.chunk_size,
            "split": dict(sorted(self.split.items())),
        }
        return json.dumps(doc, indent=1) + "\n"

    @classmethod
    def load(cls, media: Path, manifest: Manifest) -> MediaIndex | None:
        """The media index of media, checked against manifest; None when there is none
        (a plain bundle directory). Problems are InputError, each located."""
        path = media / MEDIA_INDEX
        where = Location(str(path))
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        if not path.is_file() or path.is_symlink() or st.st_size > MAX_INDEX_BYTES:
            raise InputError([Problem(where, "not a regular file of sane size")])
        try:
            doc = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError([Problem(where, f"not valid JSON: {exc}")]) from None
        problems: list[Problem] = []
        keys = {"format", "bundle", "filesystem", "chunk_size", "split"}
        if not isinstance(doc, dict) or set(doc) != keys:
            raise InputError([Problem(where, f"expected an object with keys {sorted(keys)}")])
        if doc["format"] != MEDIA_FORMAT:
            problems.append(Problem(where, f"format {doc['format']!r}, expected {MEDIA_FORMAT}"))
        if doc["bundle"] != manifest.id:
            problems.append(
                Problem(where, f"belongs to bundle {doc['bundle']!r}, not {manifest.id}")
            )
        size = doc["chunk_size"]
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= FAT32_MAX_FILE
        ):
            problems.append(Problem(where, f"chunk_size {size!r} is not in 1..{FAT32_MAX_FILE}"))
            size = None
        if not isinstance(doc["filesystem"], str) or not re.fullmatch(
            r"[a-z0-9.]{1,32}", doc["filesystem"]
        ):
            problems.append(Problem(where, "filesystem must be a short lowercase name"))
        split = doc["split"]
        if not isinstance(split, dict):
            raise InputError([*problems, Problem(where, "split must be an object")])
        files = manifest.by_path()
        for name, hashes in split.items():
            entry = files.get(name)
            if entry is None:
                problems.append(Problem(where, f"split names {name!r}, not in the manifest"))
                continue
            want = chunk_count(entry.size, size)
            if (
                not isinstance(hashes, list)
                or len(hashes) != want
                or want < 2
                or not all(isinstance(h, str) and SHA256_RE.fullmatch(h) for h in hashes)
            ):
                problems.append(
                    Problem(where, f"split {name}: expected {want} chunk sha256 values")
                )
        # A split file missing from `split` is not an error here: a differential bundle
        # leaves out its base's files, and verify expects the chunk names either way.
        if problems:
            raise InputError(problems)
        return cls(manifest.id, doc["filesystem"], size, dict(split))


def filesystem_of(path: Path) -> str:
    """The filesystem type holding path: findmnt (util-linux), else stat -f."""
    for cmd in (
        ["findmnt", "-no", "FSTYPE", "--target", str(path)],
        ["stat", "-f", "-c", "%T", str(path)],
    ):
        if shutil.which(cmd[0]) is None:
            continue
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
        name = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
        if name and re.fullmatch(r"[a-z0-9._/-]{1,32}", name[0]):
            return {"msdos": "vfat", "fuseblk": "fuseblk"}.get(name[0], name[0])
    return "unknown"


def free_bytes(path: Path) -> tuple[int | None, int]:
    """(bytes free for an unprivileged writer, allocation unit). Free is None when the
    filesystem reports no size at all (some FUSE drivers, e.g. fusefat, leave statfs
    unimplemented): unknown, not zero."""
    st = os.statvfs(path)
    unit = max(st.f_frsize, st.f_bsize, 512)
    if st.f_blocks == 0:
        return None, unit
    return st.f_bavail * st.f_frsize, unit
