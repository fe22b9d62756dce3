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
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath

from gpuprov.aptrepo.deb822 import parse_paragraphs
from gpuprov.aptrepo.debfile import hash_file
from gpuprov.aptrepo.gpgv_status import GpgvUnavailable, judge
from gpuprov.aptrepo.gpgv_status import run as run_gpgv
from gpuprov.errors import Location, Problem

SIGNATURE_FILES = {"Release", "InRelease", "Release.gpg"}
TOP_LEVEL = {"dists", "pool"}  # all a repository serves; anything else is refused
STRONG = ("sha256", "sha512")  # a file covered only by MD5Sum is as good as unlisted


def _gpgv(keyring: Path, args: list[str]) -> tuple[bool, str]:
    """(good signature, why not). Good: gpgv_status.judge found every signature good."""
    try:
        proc = run_gpgv(keyring, args)
    except GpgvUnavailable as e:
        return False, str(e)
    problem = judge(proc.returncode, proc.stdout)
    if problem is None:
        return True, ""
    stderr = proc.stderr.strip().splitlines()
    if problem.startswith("no signature found") and stderr:
        problem = stderr[-1]
    return False, problem


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
    elif not inrelease.is_file():
        problems.append(Problem(Location(str(dist)), "no InRelease and no Release + Release.gpg"))
    if signed is not None and release.is_file() and release.read_text() != signed:
        # A client that falls back to Release (old apt, a proxy dropping InRelease) must
        # see the very text InRelease vouches for, signed or not.
        problems.append(
            Problem(
                Location(str(release)),
                "differs from the text signed in InRelease; publish again "
                "(`gpuprov repo publish` writes both from one text)",
            )
        )
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
    if not any(algo in sums for algo in STRONG):
        yield Problem(release_loc, "Release has no SHA256 list (apt refuses MD5-only repositories)")
        return
    listed = set().union(*(s.keys() for s in sums.values()))
    for rel in sorted(listed):
        if not any(rel in sums.get(algo, {}) for algo in STRONG):
            # apt ignores MD5Sum for security; an index vouched for by MD5 alone could be
            # swapped for a collision.
            yield Problem(
                Location(str(dist / rel)),
                "covered only by MD5Sum in Release (needs SHA256); publish again "
                "with `gpuprov repo publish`",
            )
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


def _outside_the_archive(root: Path) -> Iterator[Problem]:
    """Files a web server would serve that no signature covers: anything beside dists/
    and pool/, files directly in dists/, and symbolic links anywhere (a link can point
    out of the tree, and what it points to is not what was signed)."""
    for entry in sorted(root.iterdir()):
        if entry.name not in TOP_LEVEL or entry.is_symlink() or not entry.is_dir():
            yield Problem(
                Location(str(entry)),
                "not part of the repository (only dists/ and pool/ may be served); "
                "remove it or publish it elsewhere",
            )
    dists = root / "dists"
    if dists.is_dir() and not dists.is_symlink():
        for entry in sorted(dists.iterdir()):
            if entry.is_symlink() or not entry.is_dir():
                yield Problem(Location(str(entry)), "not a suite folder; remove it")
    for top in TOP_LEVEL:
        base = root / top
        if not base.is_dir() or base.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                if path.is_symlink():
                    yield Problem(Location(str(path)), "symbolic link in the repository; remove it")


def verify_repo(out_dir: Path, keyring: Path, *, now: datetime | None = None) -> list[Problem]:
    """Every problem found in the repository at out_dir (empty list: all good).

    Unreferenced pool files are warnings; everything else is an error."""
    root = Path(out_dir)
    now = now or datetime.now(UTC)
    if not keyring.is_file():
        return [Problem(Location(str(keyring)), "keyring not found")]
    dists = sorted(p for p in (root / "dists").glob("*") if p.is_dir() and not p.is_symlink())
    if not dists:
        return [Problem(Location(str(root)), "no dists/<suite> found: not an apt repository")]
    problems: list[Problem] = list(_outside_the_archive(root))
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
