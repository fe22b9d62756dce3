"""Publishing a signed apt repository (pool layout) from a set of .deb files.

Layout (what Debian's archive uses, so apt needs nothing special):

    dists/<suite>/Release, InRelease (clearsigned), Release.gpg (detached)
    dists/<suite>/<comp>/binary-<arch>/Packages, Packages.gz, Packages.xz
    pool/<comp>/<prefix>/<source>/<package>_<version>_<arch>.deb

Packages is written by us from `dpkg-deb --field` (dpkg validates the control) plus
sizes and hashes computed in one read pass while copying into the pool, so the output
depends only on the inputs: paragraphs are sorted, compression carries no timestamps,
and Date is injectable (`date=`, else SOURCE_DATE_EPOCH, else now).

The repository is built in a temporary sibling directory and swapped into place with
one rename (an atomic exchange when out_dir exists), so a reader sees either the old
repository or the new one, never a half-written one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gpuprov.aptrepo.deb822 import format_paragraph
from gpuprov.aptrepo.debfile import ARCH, CHUNK, DebInfo, read_deb
from gpuprov.aptrepo.errors import BadPackage, DuplicatePackageError
from gpuprov.aptrepo.keys import SigningKey
from gpuprov.errors import InputError

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # fullmatch  # suites, codenames, components
HASHES = (("MD5Sum", "md5"), ("SHA256", "sha256"))
# Valid-Until this far after Date unless told otherwise: apt then refuses a Release that
# was frozen or replayed (an old repository with known-vulnerable packages) after it.
# A site renews it with every bundle (`gpuprov repo publish` re-signs); 90 days fits
# quarterly bundles. None (--valid-days 0) writes no Valid-Until.
DEFAULT_VALID_FOR = timedelta(days=90)


@dataclass(frozen=True)
class PackageEntry:
    package: str
    version: str
    architecture: str
    component: str
    filename: str  # relative to the repository root, as in Packages
    size: int
    sha256: str


@dataclass(frozen=True)
class RepoInfo:
    out_dir: Path
    suite: str
    codename: str
    components: tuple[str, ...]
    architectures: tuple[str, ...]
    fingerprint: str
    date: datetime
    packages: tuple[PackageEntry, ...] = field(default=())

    @property
    def release_dir(self) -> Path:
        return self.out_dir / "dists" / self.suite


def rfc2822(when: datetime) -> str:
    """apt's date format, built by hand so the locale cannot change it."""
    when = when.astimezone(UTC)
    return (
        f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year} "
        f"{when:%H:%M:%S} UTC"
    )


def _default_date() -> datetime:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), UTC)
    return datetime.now(UTC).replace(microsecond=0)


def pool_dir(component: str, source: str) -> str:
    prefix = source[:4] if source.startswith("lib") and len(source) > 3 else source[0]
    return f"pool/{component}/{prefix}/{source}"


def _check_names(suite: str, codename: str, components: tuple[str, ...], archs: tuple[str, ...]):
    problems = []
    for label, value in [("suite", suite), ("codename", codename)] + [
        ("component", c) for c in components
    ]:
        if not _NAME.fullmatch(value):
            problems.append(f"invalid {label} {value!r} (letters, digits, '.', '_', '+', '-')")
    problems += [f"invalid architecture {a!r}" for a in archs if not ARCH.fullmatch(a)]
    if not components:
        problems.append("no components given")
    if not archs:
        problems.append("no architectures given")
    if problems:
        raise InputError("; ".join(problems))


def _collect(
    pool_debs: Iterable[Path] | Mapping[str, Iterable[Path]], components: tuple[str, ...]
) -> list[tuple[str, DebInfo]]:
    by_comp = pool_debs if isinstance(pool_debs, Mapping) else {components[0]: pool_debs}
    unknown = sorted(set(by_comp) - set(components))
    if unknown:
        raise InputError(f"packages given for unknown component(s) {', '.join(unknown)}")
    seen: dict[tuple[str, str, str], DebInfo] = {}
    result: list[tuple[str, DebInfo]] = []
    for comp in components:
        for path in sorted(Path(p) for p in by_comp.get(comp, ())):
            info = read_deb(path)
            key = (info.package, info.version, info.architecture)
            if key in seen:
                if seen[key].sha256 != info.sha256:
                    raise DuplicatePackageError(seen[key].path, path, *key)
                continue  # the same file twice (e.g. in two input folders): harmless
            seen[key] = info
            result.append((comp, info))
    return result


def _copy(src: Path, dest: Path, expected_sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with src.open("rb") as fin, dest.open("wb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    if digest.hexdigest() != expected_sha256:
        raise BadPackage(src, "changed while it was being published; publish again")
    os.chmod(dest, 0o644)


def _packages_paragraph(info: DebInfo, filename: str) -> str:
    fields = {k: v for k, v in info.control.items() if k != "Description"}
    fields |= {"Filename": filename, "Size": str(info.size), "MD5sum": info.md5}
    fields["SHA256"] = info.sha256
    if "Description" in info.control:
        fields["Description"] = info.control["Description"]
    return format_paragraph(fields)


def _write_indexes(directory: Path, text: str) -> None:
    """Packages plus .gz and .xz, byte-identical for identical text (no mtime, no name)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    (directory / "Packages").write_bytes(data)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    (directory / "Packages.gz").write_bytes(buf.getvalue())
    (directory / "Packages.xz").write_bytes(lzma.compress(data, preset=6))


def _release_text(
    dist: Path,
    *,
    origin: str,
    label: str,
    suite: str,
    codename: str,
    date: datetime,
    valid_until: datetime | None,
    architectures: tuple[str, ...],
    components: tuple[str, ...],
    description: str | None,
) -> str:
    fields = {"Origin": origin, "Label": label, "Suite": suite, "Codename": codename}
    fields["Date"] = rfc2822(date)
    if valid_until is not None:
        fields["Valid-Until"] = rfc2822(valid_until)
    fields["Architectures"] = " ".join(architectures)
    fields["Components"] = " ".join(components)
    if "all" in architectures:
        # arch:all packages are also listed in every binary-<arch>/Packages (as Debian
        # does), so clients that ignore binary-all still see them.
        fields["No-Support-for-Architecture-all"] = "Packages"
    if description:
        fields["Description"] = description
    files = sorted(p for p in dist.rglob("*") if p.is_file())
    sums: dict[str, list[str]] = {name: [] for name, _ in HASHES}
    for path in files:
        data = path.read_bytes()
        rel = path.relative_to(dist).as_posix()
        for name, algo in HASHES:
            digest = hashlib.new(algo, data, usedforsecurity=False).hexdigest()
            sums[name].append(f" {digest} {len(data):16d} {rel}")
    for name, _ in HASHES:
        fields[name] = "\n" + "\n".join(sums[name])
    return format_paragraph(fields).replace(": \n", ":\n")


def _swap_into_place(built: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        built.rename(out_dir)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    rename_exchange, at_fdcwd = 2, -100
    renameat2 = getattr(libc, "renameat2", None)
    if (
        renameat2 is not None
        and renameat2(at_fdcwd, os.fsencode(built), at_fdcwd, os.fsencode(out_dir), rename_exchange)
        == 0
    ):
        shutil.rmtree(built)  # now holds the previous repository
        return
    # No renameat2 (old libc, some filesystems): two renames, a window of microseconds.
    old = built.with_name(built.name + ".old")
    out_dir.rename(old)
    built.rename(out_dir)
    shutil.rmtree(old)


def _check_key_lifetime(key: SigningKey, date: datetime, valid_until: datetime | None) -> None:
    """A Release whose key expires before its Valid-Until would be refused by apt early
    (EXPKEYSIG): say so now, while the key can still be extended, not on the GPU hosts."""
    if key.expires is None:
        return
    extend = (
        f"extend it with `gpuprov repo extend-key --home {key.home} --expire 2y --export "
        "KEYRING` and give the clients the new keyring (the next apply installs it)"
    )
    if key.expires <= date:
        raise InputError(
            f"signing key {key.fingerprint} expired on {rfc2822(key.expires)}; {extend}"
        )
    if valid_until is not None and key.expires < valid_until:
        raise InputError(
            f"signing key {key.fingerprint} expires on {rfc2822(key.expires)}, before the "
            f"Release's Valid-Until {rfc2822(valid_until)}; {extend}, or publish with fewer "
            "--valid-days"
        )


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise InputError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "dists").is_dir():
        # Never replace a folder that is not a repository we published (e.g. a typo'd $HOME).
        raise InputError(
            f"{out_dir} is not empty and is not an apt repository; refusing to replace it"
        )


def publish_repo(
    pool_debs: Iterable[Path] | Mapping[str, Iterable[Path]],
    out_dir: Path,
    *,
    suite: str,
    key: SigningKey,
    components: Iterable[str] = ("main",),
    architectures: Iterable[str] = ("amd64", "all"),
    origin: str = "gpuprov",
    label: str | None = None,
    codename: str | None = None,
    description: str | None = None,
    date: datetime | None = None,
    valid_for: timedelta | None = DEFAULT_VALID_FOR,
) -> RepoInfo:
    """Build a signed repository at out_dir from .deb files, replacing it atomically.

    pool_debs is a list of .deb paths (all go to the first component) or a mapping
    component -> paths. valid_for: Valid-Until after date (None: no Valid-Until).
    Raises BadPackage, DuplicatePackageError, InputError, GpgError.
    """
    components, archs = tuple(components), tuple(architectures)
    codename = codename or suite
    _check_names(suite, codename, components, archs)
    out_dir = Path(out_dir).absolute()
    _check_out_dir(out_dir)
    date = (date or _default_date()).astimezone(UTC)
    valid_until = date + valid_for if valid_for else None
    _check_key_lifetime(key, date, valid_until)
    debs = _collect(pool_debs, components)
    for _comp, info in debs:
        if info.architecture != "all" and info.architecture not in archs:
            raise BadPackage(
                info.path,
                f"architecture {info.architecture} is not one of the repository's ({' '.join(archs)})",
            )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=out_dir.parent))
    try:
        entries: list[PackageEntry] = []
        index: dict[tuple[str, str], list[tuple[tuple[str, str, str], str]]] = {
            (c, a): [] for c in components for a in archs
        }
        for comp, info in debs:
            filename = f"{pool_dir(comp, info.source)}/{info.canonical_name}"
            _copy(info.path, build / filename, info.sha256)
            paragraph = _packages_paragraph(info, filename)
            sort_key = (info.package, info.version, info.architecture)
            targets = archs if info.architecture == "all" else (info.architecture,)
            for arch in targets:
                index[(comp, arch)].append((sort_key, paragraph))
            entries.append(
                PackageEntry(
                    info.package,
                    info.version,
                    info.architecture,
                    comp,
                    filename,
                    info.size,
                    info.sha256,
                )
            )
        dist = build / "dists" / suite
        for (comp, arch), paragraphs in index.items():
            text = "\n".join(p for _k, p in sorted(paragraphs))
            _write_indexes(dist / comp / f"binary-{arch}", text)
        release = _release_text(
            dist,
            origin=origin,
            label=label or origin,
            suite=suite,
            codename=codename,
            date=date,
            valid_until=valid_until,
            architectures=archs,
            components=components,
            description=description,
        )
        (dist / "Release").write_text(release)
        key.clearsign(dist / "Release", dist / "InRelease")
        key.detach_sign(dist / "Release", dist / "Release.gpg")
        for path in [build, *build.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)  # served read-only to all
        _swap_into_place(build, out_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return RepoInfo(
        out_dir=out_dir,
        suite=suite,
        codename=codename,
        components=components,
        architectures=archs,
        fingerprint=key.fingerprint,
        date=date,
        packages=tuple(
            sorted(entries, key=lambda e: (e.component, e.package, e.version, e.architecture))
        ),
    )
