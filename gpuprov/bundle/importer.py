"""Put a verified bundle on the mirror host, side by side with the current one, and switch.

    /srv/gpuprov/bundles/<id>/     one directory per imported bundle (the full tree)
    /srv/gpuprov/current  -> bundles/<id>      what the mirror services serve
    /srv/gpuprov/previous -> bundles/<old id>  what `gpuprov bundle rollback` goes back to

The bundle is verified here first (signature, every byte; a differential bundle against
the manifest the mirror serves now, its base). It then travels as one tar stream into
`bundles/.<id>.partial.<pid>` on the far side, where unchanged files of a differential
are hard-linked from the current bundle, every file is checked again with sha256sum
against the signed list, and only then the directory is renamed into place and
`current` switched with a rename of a temp symlink: a half-imported bundle is never
served.
"""

from __future__ import annotations

import os
import re
import shlex
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from gpuprov.bundle import media as m
from gpuprov.bundle.layout import (
    BLOCK,
    MANIFEST,
    SIGNATURE,
    FileEntry,
    Manifest,
    SignatureError,
    carried_files,
    load_manifest,
    verify_signature,
)
from gpuprov.bundle.remote import Remote, RemoteError
from gpuprov.bundle.verify import Finding, verify_media
from gpuprov.errors import GpuprovError, InputError

DEFAULT_ROOT = "/srv/gpuprov"
CHECKSUMS = ".gpuprov-sha256sums"
REUSE = ".gpuprov-reuse"
ROOT_RE = re.compile(r"/[A-Za-z0-9._/-]+")
ID_RE = re.compile(r"[0-9a-f]{64}")


class BundleRefused(GpuprovError):
    """The bundle is damaged, untrusted or for another base: nothing was imported."""

    def __init__(self, message: str, findings: list[Finding] | None = None):
        self.findings = findings or []
        super().__init__(message)


@dataclass
class ImportResult:
    bundle: str
    host: str
    previous: str | None
    files: int
    bytes_sent: int
    reused_from_base: int
    seconds: float
    findings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _check_root(root: str) -> str:
    if not ROOT_RE.fullmatch(root) or ".." in root.split("/"):
        raise InputError(f"--root {root!r}: an absolute path of [A-Za-z0-9._-] names")
    return root.rstrip("/") or "/"


def current_manifest(remote: Remote, root: str) -> Manifest | None:
    """The manifest of the bundle the mirror serves now (None: nothing imported yet)."""
    r = shlex.quote(root)
    text = remote.run(
        f'f={r}/current/{MANIFEST}; if [ -f "$f" ]; then head -c {64 * 1024 * 1024} "$f"; fi'
    )
    if not text.strip():
        return None
    return Manifest.from_json(text, source=f"{remote.host.name}:{root}/current/{MANIFEST}")


def import_bundle(
    media: Path,
    remote: Remote,
    keyring: Path,
    *,
    root: str = DEFAULT_ROOT,
    threads: int | None = None,
) -> ImportResult:
    """Verify media, then stream it onto remote and switch `current` to it."""
    started = time.monotonic()
    root = _check_root(root)
    # The manifest and signature are read ONCE and checked as read; those very bytes are
    # what the mirror host receives, so a stick that changes them later changes nothing.
    signed = _signed_copy(media, keyring)
    manifest = Manifest.from_json(signed[MANIFEST], source=str(media / MANIFEST))
    current = current_manifest(remote, root)
    if manifest.base is not None:
        serving = current.id if current else "nothing"
        if current is None or current.id != manifest.base:
            raise BundleRefused(
                f"bundle {manifest.id[:12]} is differential on base {manifest.base[:12]}, "
                f"but {remote.host.name} serves {serving[:12]}: import its base first"
            )
    report = verify_media(media, keyring, base=current if manifest.base else None, threads=threads)
    if not report.ok:
        raise BundleRefused(
            f"{media}: {len(report.findings)} problem(s), nothing imported: "
            + "; ".join(str(f) for f in report.findings[:3]),
            report.findings,
        )
    if report.bundle != manifest.id:  # the media changed between the two reads
        raise BundleRefused(f"{media}: the manifest changed while it was being verified")
    carried = carried_files(manifest, current if manifest.base else None)
    carried_paths = {e.path for e in carried}
    reuse = [e for e in manifest.files if e.path not in carried_paths]
    index = m.MediaIndex.load(media, manifest)
    size = index.chunk_size if index else None

    sent = 0

    def feed(stdin: IO[bytes]) -> None:
        nonlocal sent
        sent = _write_tar(stdin, media, manifest, signed, carried, reuse, size)

    previous = remote.run(
        _import_script(root, manifest, len(manifest.files)), feed=feed, timeout=None
    )
    old = _parse_switch(previous)
    return ImportResult(
        bundle=manifest.id,
        host=remote.host.name,
        previous=old,
        files=len(manifest.files),
        bytes_sent=sent,
        reused_from_base=len(reuse),
        seconds=round(time.monotonic() - started, 3),
    )


def _signed_copy(media: Path, keyring: Path) -> dict[str, bytes]:
    """manifest.json and its signature, read once and checked as read (in a private
    directory, so nothing on the media can change between the check and the use)."""
    load_manifest(media)  # bad input (no manifest, not a regular file, too large) first
    with tempfile.TemporaryDirectory(prefix="gpuprov-import-") as tmp:
        copy = {}
        for name in (MANIFEST, SIGNATURE):
            path = media / name
            if not path.is_file() or path.is_symlink():
                raise BundleRefused(f"{path}: missing or not a regular file")
            copy[name] = path.read_bytes()
            (Path(tmp) / name).write_bytes(copy[name])
        try:
            verify_signature(Path(tmp), keyring)
        except SignatureError as exc:
            raise BundleRefused(str(exc), [Finding(SIGNATURE, str(exc))]) from None
    return copy


def _write_tar(
    out: IO[bytes],
    media: Path,
    manifest: Manifest,
    signed: dict[str, bytes],
    carried: list[FileEntry],
    reuse: list[FileEntry],
    size: int | None,
) -> int:
    """A POSIX tar stream: manifest, signature, the check lists, then every carried file
    reassembled from its chunks. Headers are written by tarfile, data copied in large
    blocks (tarfile's own copy loop uses 16 KiB)."""
    sent = 0

    def member(name: str, length: int, chunks: list[Path] | None, data: bytes = b"") -> None:
        nonlocal sent
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = length, 0o444, 0
        header = info.tobuf(tarfile.PAX_FORMAT)
        out.write(header)
        sent += len(header)
        left = length
        if chunks is None:
            out.write(data)
            left = 0
        else:
            view = memoryview(bytearray(BLOCK))
            for chunk in chunks:
                fd = os.open(chunk, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    while left and (n := os.readv(fd, [view[: min(BLOCK, left)]])):
                        out.write(view[:n])
                        left -= n
                finally:
                    os.close(fd)
        if left:
            raise RemoteError(f"{name}: media ended {left} bytes early (was it unplugged?)")
        pad = -length % tarfile.BLOCKSIZE
        out.write(b"\0" * pad)
        sent += length + pad

    for name in (MANIFEST, SIGNATURE):
        member(name, len(signed[name]), None, signed[name])
    sums = "".join(f"{e.sha256}  ./{e.path}\n" for e in manifest.files).encode()
    member(CHECKSUMS, len(sums), None, sums)
    listed = "".join(f"{e.path}\n" for e in reuse).encode()
    member(REUSE, len(listed), None, listed)
    for entry in carried:
        chunks = [media / n for n in m.chunk_names(entry, size)]
        member(entry.path, entry.size, chunks)
    out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    out.flush()
    return sent + 2 * tarfile.BLOCKSIZE


def _import_script(root: str, manifest: Manifest, count: int) -> str:
    """The far side, in POSIX sh with GNU tar and coreutils (Debian/Ubuntu/RHEL base).
    Every value interpolated is validated (root by ROOT_RE, id by ID_RE) and quoted."""
    assert ID_RE.fullmatch(manifest.id)
    r, bid = shlex.quote(root), manifest.id
    return f"""set -eu
umask 022
R={r}; B="$R/bundles"; T="$B/.{bid}.partial.$$"
mkdir -p "$B"
rm -rf "$B"/.{bid}.partial.* "$B"/.{bid}.old.*
mkdir "$T"
trap 'rm -rf "$T"' EXIT
tar -x -f - -C "$T" --no-same-owner --no-same-permissions
cd "$T"
if [ -s {REUSE} ]; then
  CUR=$(readlink -f "$R/current")
  while IFS= read -r p; do
    mkdir -p "$(dirname "$p")"
    ln "$CUR/$p" "$p" 2>/dev/null || cp -p "$CUR/$p" "$p"
  done < {REUSE}
fi
if ! sha256sum --quiet --strict -c {CHECKSUMS} >&2; then
  echo "gpuprov: the copy on this host does not match the signed manifest" >&2; exit 3
fi
# -path, not -name: a model store holds commits/<sha>/manifest.json files of its own.
n=$(find . -type f ! -path ./{CHECKSUMS} ! -path ./{REUSE} ! -path ./{MANIFEST} ! -path ./{SIGNATURE} | wc -l)
if [ "$n" -ne {count} ]; then
  echo "gpuprov: $n files arrived, the manifest lists {count}" >&2; exit 3
fi
rm -f {CHECKSUMS} {REUSE}
find . -type d -exec chmod 0755 {{}} +
cd /
sync
if [ -d "$B/{bid}" ]; then mv "$B/{bid}" "$B/.{bid}.old.$$"; fi
mv "$T" "$B/{bid}"
trap - EXIT
rm -rf "$B/.{bid}.old.$$"
OLD=$(readlink "$R/current" || true)
if [ -n "$OLD" ] && [ "$OLD" != "bundles/{bid}" ]; then
  ln -sfn "$OLD" "$R/.previous.tmp" && mv -T "$R/.previous.tmp" "$R/previous"
fi
ln -sfn "bundles/{bid}" "$R/.current.tmp" && mv -T "$R/.current.tmp" "$R/current"
sync
echo "switched ${{OLD:-none}} bundles/{bid}"
"""


def _parse_switch(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if match := re.fullmatch(r"switched (\S+) bundles/([0-9a-f]{64})", line.strip()):
            old = match.group(1)
            found = re.fullmatch(r"bundles/([0-9a-f]{64})", old)
            return found.group(1) if found else None
    raise RemoteError(f"the far side did not confirm the switch: {stdout.strip()[-300:]!r}")


def rollback(remote: Remote, *, root: str = DEFAULT_ROOT) -> tuple[str, str]:
    """Switch `current` back to `previous` (and `previous` to what was current, so a
    second rollback undoes the first). Returns (now current id, now previous id)."""
    r = shlex.quote(_check_root(root))
    out = remote.run(
        f"""set -eu
R={r}
P=$(readlink "$R/previous" || true); C=$(readlink "$R/current" || true)
case "$P" in bundles/*) ;; *) echo "no previous bundle to roll back to" >&2; exit 4;; esac
[ -f "$R/$P/{MANIFEST}" ] || {{ echo "previous bundle $P is gone" >&2; exit 4; }}
ln -sfn "$P" "$R/.current.tmp" && mv -T "$R/.current.tmp" "$R/current"
if [ -n "$C" ]; then ln -sfn "$C" "$R/.previous.tmp" && mv -T "$R/.previous.tmp" "$R/previous"; fi
sync
echo "current $P previous $C"
"""
    )
    match = re.search(r"current bundles/([0-9a-f]{64}) previous bundles/([0-9a-f]{64})", out)
    if not match:
        raise RemoteError(f"unexpected answer from the far side: {out.strip()[-300:]!r}")
    return match.group(1), match.group(2)
