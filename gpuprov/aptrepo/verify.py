"""Re-checking a published repository the way apt would, and more strictly.

Signatures are checked with gpgv against the given keyring only (never a system
keyring); only the *signed* Release text is trusted for hashes. Every index listed in
Release must match its size and hashes, every package in the indexes must match its
Packages entry, and files nobody vouches for are reported. Used after publishing and
by bundle import before a repository is served.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath

from gpuprov.aptrepo.deb822 import parse_paragraphs
from gpuprov.aptrepo.debfile import hash_file
from gpuprov.errors import Location, Problem

SIGNATURE_FILES = {"Release", "InRelease", "Release.gpg"}


def _gpgv(keyring: Path, args: list[str]) -> tuple[bool, str]:
    """(good signature, gpgv's message). Good means exit 0 and a VALIDSIG status line."""
    if shutil.which("gpgv") is None:
        return False, "gpgv not found (install the gpgv package)"
    with tempfile.TemporaryDirectory(prefix="gpuprov-gpgv-") as home:
        proc = subprocess.run(
            [
                "gpgv",
                "--homedir",
                home,
                "--status-fd",
                "1",
                "--keyring",
                str(keyring.absolute()),
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    good = proc.returncode == 0 and "[GNUPG:] VALIDSIG" in proc.stdout
    status = [ln.removeprefix("[GNUPG:] ") for ln in proc.stdout.splitlines()]
    interesting = [
        s
        for s in status
        if s.split(" ")[0] in {"BADSIG", "NO_PUBKEY", "ERRSIG", "EXPKEYSIG", "REVKEYSIG", "NODATA"}
    ]
    stderr = proc.stderr.strip().splitlines()
    message = "; ".join(interesting) or (stderr[-1] if stderr else "no valid signature")
    return good, message


def _signed_release(dist: Path, keyring: Path, problems: list[Problem]) -> str | None:
    """The Release text vouched for by a good signature, or None (problems say why)."""
    inrelease, release, detached = dist / "InRelease", dist / "Release", dist / "Release.gpg"
    signed: str | None = None
    if inrelease.is_file():
        with tempfile.TemporaryDirectory(prefix="gpuprov-inrelease-") as tmp:
            out = Path(tmp) / "Release"
            good, message = _gpgv(keyring, ["--output", str(out), str(inrelease)])
            if good:
                signed = out.read_text()
            else:
                problems.append(
                    Problem(Location(str(inrelease)), f"bad or untrusted signature: {message}")
                )
    if release.is_file() and detached.is_file():
        good, message = _gpgv(keyring, [str(detached), str(release)])
        if not good:
            problems.append(
                Problem(Location(str(detached)), f"bad or untrusted signature: {message}")
            )
        elif signed is None:
            signed = release.read_text()
        elif signed != release.read_text():
            problems.append(
                Problem(Location(str(release)), "differs from the text signed in InRelease")
            )
    elif not inrelease.is_file():
        problems.append(Problem(Location(str(dist)), "no InRelease and no Release + Release.gpg"))
    return signed


def _release_sums(text: str, where: str) -> dict[str, dict[str, tuple[int, str]]]:
    """{algorithm: {path: (size, digest)}} from the signed Release."""
    fields = parse_paragraphs(text, source=where)[0]
    sums: dict[str, dict[str, tuple[int, str]]] = {}
    for name, algo in (("MD5Sum", "md5"), ("SHA256", "sha256"), ("SHA512", "sha512")):
        for line in fields.get(name, "").splitlines():
            parts = line.split()
            if len(parts) == 3:
                sums.setdefault(algo, {})[parts[2]] = (int(parts[1]), parts[0])
    return sums


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo, usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read_index(path: Path) -> str:
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode()
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes()).decode()
    return path.read_text()


def _check_suite(root: Path, dist: Path, keyring: Path, now: datetime) -> Iterator[Problem]:
    problems: list[Problem] = []
    signed = _signed_release(dist, keyring, problems)
    yield from problems
    if signed is None:
        return  # nothing trustworthy to check hashes against
    release_loc = Location(str(dist / "InRelease"))
    try:
        fields = parse_paragraphs(signed, source=str(dist / "Release"))[0]
        sums = _release_sums(signed, str(dist / "Release"))
    except (ValueError, IndexError) as exc:
        yield Problem(release_loc, f"unreadable Release: {exc}")
        return
    if dist.name not in (fields.get("Suite"), fields.get("Codename")):
        # apt refuses a Release whose Suite/Codename does not match what was asked for;
        # a renamed or swapped dists/ folder must not pass silently here either.
        yield Problem(release_loc, f"Suite/Codename in Release do not name {dist.name!r}")
    if "Valid-Until" in fields:
        try:
            valid_until = parsedate_to_datetime(fields["Valid-Until"])
        except (TypeError, ValueError):
            yield Problem(release_loc, f"unreadable Valid-Until {fields['Valid-Until']!r}")
        else:
            if valid_until.replace(tzinfo=valid_until.tzinfo or UTC) < now:
                yield Problem(release_loc, f"expired: Valid-Until {fields['Valid-Until']}")
    if "sha256" not in sums:
        yield Problem(release_loc, "Release has no SHA256 list (apt refuses MD5-only repositories)")
        return
    listed = set().union(*(s.keys() for s in sums.values()))
    for rel in sorted(listed):
        path = dist / rel
        if ".." in PurePosixPath(rel).parts or not path.is_file():
            yield Problem(Location(str(path)), "listed in Release but missing")
            continue
        for algo, table in sums.items():
            if rel in table:
                size, digest = table[rel]
                if path.stat().st_size != size:
                    yield Problem(
                        Location(str(path)), f"size {path.stat().st_size}, Release says {size}"
                    )
                    break
                if _digest(path, algo) != digest:
                    yield Problem(Location(str(path)), f"{algo} mismatch with Release")
                    break
    for path in sorted(p for p in dist.rglob("*") if p.is_file()):
        rel = path.relative_to(dist).as_posix()
        if rel not in listed and rel not in SIGNATURE_FILES:
            yield Problem(Location(str(path)), "not listed in the signed Release")
    # Packages indexes: checked above against Release; now each package against them.
    for rel in sorted(r for r in listed if PurePosixPath(r).name == "Packages"):
        yield from _check_packages(root, dist / rel)


def _check_packages(root: Path, index: Path) -> Iterator[Problem]:
    if not index.is_file():
        return
    try:
        paragraphs = parse_paragraphs(_read_index(index), source=str(index))
    except (ValueError, OSError, EOFError, lzma.LZMAError) as exc:
        yield Problem(Location(str(index)), f"unreadable index: {exc}")
        return
    for para in paragraphs:
        name = f"{para.get('Package')} {para.get('Version')} ({para.get('Architecture')})"
        filename = para.get("Filename", "")
        rel = PurePosixPath(filename)
        if not filename or rel.is_absolute() or ".." in rel.parts:
            yield Problem(Location(str(index)), f"{name}: unsafe or missing Filename {filename!r}")
            continue
        path = root / rel
        if not path.is_file():
            yield Problem(Location(str(path)), f"{name}: listed in {index.name} but missing")
            continue
        size, md5, sha256 = hash_file(path)
        if "SHA256" not in para:
            yield Problem(Location(str(index)), f"{name}: no SHA256 field")
        if str(size) != para.get("Size"):
            yield Problem(
                Location(str(path)), f"{name}: size {size}, Packages says {para.get('Size')}"
            )
        elif para.get("SHA256", sha256) != sha256:
            yield Problem(Location(str(path)), f"{name}: sha256 mismatch with Packages")
        elif para.get("MD5sum", md5) != md5:
            yield Problem(Location(str(path)), f"{name}: md5 mismatch with Packages")


def verify_repo(out_dir: Path, keyring: Path, *, now: datetime | None = None) -> list[Problem]:
    """Every problem found in the repository at out_dir (empty list: all good).

    Unreferenced pool files are warnings; everything else is an error."""
    root = Path(out_dir)
    now = now or datetime.now(UTC)
    if not keyring.is_file():
        return [Problem(Location(str(keyring)), "keyring not found")]
    dists = sorted(p for p in (root / "dists").glob("*") if p.is_dir())
    if not dists:
        return [Problem(Location(str(root)), "no dists/<suite> found: not an apt repository")]
    problems: list[Problem] = []
    for dist in dists:
        problems += _check_suite(root, dist, keyring, now)
    referenced: set[Path] = set()
    for index in root.glob("dists/*/*/binary-*/Packages"):
        try:
            for para in parse_paragraphs(index.read_text()):
                referenced.add((root / para.get("Filename", "")).resolve())
        except ValueError:
            pass  # reported by _check_packages
    for path in sorted(p for p in (root / "pool").rglob("*") if p.is_file()):
        if path.resolve() not in referenced:
            problems.append(
                Problem(Location(str(path)), "in the pool but in no Packages index", "warning")
            )
    return problems
