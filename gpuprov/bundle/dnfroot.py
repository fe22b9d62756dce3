"""RHEL targets: the bundle's packages resolved by dnf itself, in an isolated installroot.

The root is a directory under the build cache with its own dnf.conf, repository files,
keys, installroot and dnf cache; the build machine's /etc/dnf, /etc/yum.repos.d and rpmdb
are never read (`-c ROOT/dnf.conf`, `reposdir=`, `varsdir=`, `--noplugins`).

    ROOT/dnf.conf  ROOT/repos.d/upstream.repo  ROOT/keys/source<i>.asc
    ROOT/installroot/  (empty rpmdb: the whole closure is carried; an rpmdb base is not
                        supported yet)
    ROOT/cache/        (dnf's metadata and, keepcache=1, every downloaded package:
                        a re-run fetches none again)

Every upstream has `gpgcheck=1` and `repo_gpgcheck=1` with the inventory's keyring: dnf
refuses metadata whose repomd.xml signature fails and packages whose signature fails.

Each host's package set is one transaction, as its deploys install it
(deploys/driver.py): the driver's module stream enabled (`dnf module enable
nvidia-driver:580-open`, NVIDIA's RHEL 8/9 packaging), then one `dnf install` of the
stream's profile (`@nvidia-driver:580-open/default`, `/fm` with fabric manager) and the
pinned packages, `--downloadonly`. The transaction dnf prints is the closure, its files
are taken from dnf's package cache; a package dnf cannot resolve, or whose signature fails, fails the build
with dnf's own words. The dry run asks for the same transaction with `--assumeno` and
sizes it with `dnf repoquery`.

`publish_rpm_repo` turns the closure into the bundle's repository: RPMs (upstream
signatures kept), `createrepo_c`, the enabled streams' module metadata, the upstream
keys (keys/upstream.asc, for gpgcheck on the hosts) and repomd.xml signed with the
bundle key (repomd.xml.asc, for repo_gpgcheck).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuprov.bundle.packages import OsPackages
from gpuprov.errors import GpuprovError
from gpuprov.inventory.bundle import AptSourceSpec

DNF_TIMEOUT_S = 1800  # one dnf call (metadata of every upstream, or the whole closure)
MAX_MODULES_BYTES = 64 * 1024 * 1024  # decompressed modules.yaml of one upstream
# A row of dnf's transaction table: name arch [epoch:]version-release repo size unit
ROW_RE = re.compile(
    r"(?P<name>[A-Za-z0-9_.+-]+)\s+(?P<arch>x86_64|noarch|aarch64|i686)\s+"
    r"(?:(?P<epoch>[0-9]+):)?(?P<version>[A-Za-z0-9._+~^]+)-(?P<release>[A-Za-z0-9._+~^]+)\s+"
    r"(?P<repo>[A-Za-z0-9_.:-]+)\s+[0-9.]+\s*[kMGT]?"
)
RPM_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]+\.rpm")
# `dnf repoquery --qf` output: name epoch version release arch downloadsize
QF = "%{name} %{epoch} %{version} %{release} %{arch} %{downloadsize}"
QF_RE = re.compile(r"(\S+) ([0-9]+) (\S+) (\S+) (\S+) ([0-9]+)")
STREAM_RE = re.compile(r"([A-Za-z0-9_.+-]+):([A-Za-z0-9_.+-]+)")
# Sections of the table that list packages the transaction brings in.
INSTALL_SECTIONS = ("Installing", "Upgrading", "Reinstalling", "Downgrading")


class DnfError(GpuprovError):
    """dnf could not resolve or fetch a bundle's packages (named in the message)."""


@dataclass(frozen=True)
class RpmRef:
    """One package of a transaction, as dnf names it."""

    name: str
    epoch: str
    version: str
    release: str
    arch: str

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.epoch}:{self.version}-{self.release}.{self.arch}"


def transaction_rows(output: str) -> list[RpmRef]:
    """The packages a dnf transaction table installs (`dnf install --assumeno` or
    `--downloadonly` output). A name too long for its column stands alone on its line
    and the rest of the row follows on the next: the two are joined."""
    refs: list[RpmRef] = []
    section = None
    pending = ""
    for line in output.splitlines():
        if not line.startswith(" ") and line.endswith(":"):
            section = line.split()[0].rstrip(":") if line.split() else None
            pending = ""
            continue
        if not line.strip() or line.startswith(("=", "Transaction Summary")):
            section = None if line.startswith("Transaction Summary") else section
            continue
        if section not in INSTALL_SECTIONS:
            continue
        text = f"{pending} {line.strip()}".strip()
        m = ROW_RE.fullmatch(text)
        if m:
            refs.append(RpmRef(m["name"], m["epoch"] or "0", m["version"], m["release"], m["arch"]))
            pending = ""
        elif len(text.split()) == 1:
            pending = text
    return refs


def dnf_reasons(output: str) -> list[str]:
    """dnf's own reasons, one line each: no match for an argument, unmet dependencies,
    signature failures, a repository whose metadata cannot be read."""
    keep = (
        "No match for argument", "Error:", "Problem", "  - ", " - nothing provides",
        "Unable to find a match", "All matches were filtered out", "GPG check", "GPG Keys",
        "signature", "Public key",
        "Failing package", "Curl error", "Cannot download", "Failed to download",
        "repomd.xml", "is not installed", "conflicting requests", "Modular dependency",
    )  # fmt: skip
    out = []
    for line in output.splitlines():
        text = line.rstrip()
        if any(k in text for k in keep) and text.strip() not in out:
            out.append(text.strip())
    return out[:40]


def armored_keys(keyring: Path, dest: Path) -> None:
    """A keyring (binary, as apt takes it, or armored) as the armored block dnf and rpm
    import; gpg reads it in a throwaway home, so no key store of this machine is used."""
    with tempfile.TemporaryDirectory(prefix="gpuprov-dnfkeys-") as home:
        done = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--quiet", "--import", str(keyring)],
            capture_output=True, timeout=120,
        )  # fmt: skip
        out = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--armor", "--export"],
            capture_output=True, timeout=120,
        )  # fmt: skip
    if done.returncode != 0 or out.returncode != 0 or b"BEGIN PGP PUBLIC KEY" not in out.stdout:
        raise DnfError(f"{keyring}: not an OpenPGP keyring gpg can read: "
                       f"{done.stderr.decode(errors='replace').strip()[-500:]}")  # fmt: skip
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(out.stdout)


class DnfRoot:
    def __init__(
        self, root: Path, arch: str, sources: tuple[AptSourceSpec, ...], releasever: str = "9"
    ):
        self.root = Path(root).absolute()
        self.arch = arch
        self.sources = sources
        self.releasever = releasever

    def prepare(self) -> None:
        missing = [t for t in ("dnf", "gpg") if shutil.which(t) is None]
        if missing:
            raise DnfError(f"not installed on this machine: {', '.join(missing)} "
                           "(RHEL targets need them; Debian packages dnf and gnupg)")  # fmt: skip
        for sub in ("repos.d", "vars", "installroot", "cache", "keys"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # No inherited settings: best=False as dnf's own default (pins beside a module
        # profile resolve to the pinned versions), no weak dependencies (hosts install none).
        (self.root / "dnf.conf").write_text(
            "[main]\ngpgcheck=1\nrepo_gpgcheck=1\ninstall_weak_deps=False\nbest=False\n"
            "keepcache=1\nplugins=0\nskip_if_unavailable=False\n"
            f"module_platform_id=platform:el{self.releasever}\n"
        )
        stanzas = []
        for i, src in enumerate(self.sources):
            key = self.root / "keys" / f"source{i}.asc"
            armored_keys(src.keyring, key)
            stanzas.append(
                f"[source{i}]\nname=upstream {i} ({src.url})\nbaseurl={src.url}\nenabled=1\n"
                f"gpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://{key}\n"
            )
        (self.root / "repos.d" / "upstream.repo").write_text("\n".join(stanzas))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = self.root
        base = [
            "dnf", "-y", "-c", str(r / "dnf.conf"), f"--installroot={r / 'installroot'}",
            f"--releasever={self.releasever}", f"--forcearch={self.arch}", "--noplugins",
            f"--setopt=reposdir={r / 'repos.d'}", f"--setopt=varsdir={r / 'vars'}",
            f"--setopt=cachedir={r / 'cache'}",
        ]  # fmt: skip
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(r)}
        for proxy in ("http_proxy", "https_proxy", "no_proxy"):
            if proxy in os.environ:
                env[proxy] = os.environ[proxy]
        try:
            return subprocess.run(
                [*base, *args], capture_output=True, text=True, timeout=DNF_TIMEOUT_S, env=env
            )
        except subprocess.TimeoutExpired:
            raise DnfError(f"dnf {args[0]} took longer than {DNF_TIMEOUT_S} s") from None

    def _fail(self, label: str, what: str, done: subprocess.CompletedProcess[str]) -> DnfError:
        reasons = dnf_reasons(done.stdout + "\n" + done.stderr)
        return DnfError(
            f"{label}: {what}:\n  " + "\n  ".join(reasons or [done.stderr.strip()[-2000:]])
        )

    def _enable(self, label: str, streams: list[str]) -> None:
        """Exactly these module streams enabled (another transaction may have enabled
        another stream of the same module: reset first)."""
        modules = sorted({s.split(":")[0] for s in streams})
        if modules:
            done = self.run("module", "reset", *modules)
            if done.returncode != 0:
                raise self._fail(label, "dnf cannot read the upstream repositories", done)
        for stream in streams:
            done = self.run("module", "enable", stream)
            if done.returncode != 0:
                raise self._fail(label, f"dnf cannot enable module stream {stream}", done)

    def _install_args(
        self, txn: list[str], profiles: dict[str, str]
    ) -> tuple[list[str], list[str]]:
        """(streams to enable, `dnf install` arguments) of one transaction."""
        streams, args = [], []
        for spec in txn:
            m = STREAM_RE.fullmatch(spec)
            if m:
                streams.append(spec)
                args.append(f"@{spec}/{profiles.get(spec, 'default')}")
            else:
                args.append(spec)
        return streams, args

    def resolve(
        self, label: str, pkgs: OsPackages, *, dry_run: bool
    ) -> tuple[list[Path], list[RpmRef]]:
        """Every transaction's closure: (RPM files in dnf's cache, refs), or with dry_run no
        files and the refs of the union. Nothing is downloaded in a dry run."""
        closure: dict[str, RpmRef] = {}
        for txn in pkgs.transactions():
            streams, args = self._install_args(txn, module_profiles(pkgs, txn))
            self._enable(label, streams)
            if dry_run:
                done = self.run("install", "--assumeno", *args)
                refs = transaction_rows(done.stdout)
                if not refs or "Operation aborted" not in done.stdout + done.stderr:
                    raise self._fail(label, "dnf cannot resolve the bundle's packages", done)
            else:
                refs = self._download(label, args)
            closure.update((r.filename, r) for r in refs)
        refs = sorted(closure.values(), key=lambda r: r.filename)
        if dry_run:
            return [], refs
        cached = self.cached()
        return [cached[r.filename] for r in refs], refs

    def cached(self) -> dict[str, Path]:
        """filename -> the package in dnf's cache (keepcache=1: every earlier download)."""
        return {p.name: p for p in sorted(self.root.glob("cache/*/packages/*.rpm"))}

    def _download(self, label: str, args: list[str]) -> list[RpmRef]:
        """`dnf install --downloadonly`: dnf fetches what its cache lacks (a cached file
        whose checksum matches the signed metadata is not fetched again) and checks every
        package's signature; only then are the transaction's files taken from its cache."""
        done = self.run("install", "--downloadonly", *args)
        if done.returncode != 0:
            raise self._fail(label, "dnf cannot resolve or fetch the bundle's packages", done)
        refs = transaction_rows(done.stdout)
        lost = sorted({r.filename for r in refs} - set(self.cached()))
        if not refs or lost:
            raise DnfError(f"{label}: dnf's transaction lists packages it did not leave in "
                           f"its cache: {lost[:10] or 'none parsed'}")  # fmt: skip
        return refs

    def sizes(self, label: str, refs: list[RpmRef]) -> dict[str, int]:
        """filename -> download size in bytes, from the repositories' metadata."""
        if not refs:
            return {}
        done = self.run("repoquery", "--quiet", f"--qf={QF}", *[r.nevra for r in refs])
        if done.returncode != 0:
            raise self._fail(label, "dnf repoquery failed", done)
        out = {}
        for line in done.stdout.splitlines():
            m = QF_RE.fullmatch(line.strip())
            if m:
                name, _epoch, version, release, arch, size = m.groups()
                out[f"{name}-{version}-{release}.{arch}.rpm"] = int(size)
        return out

    def enabled_streams(self, pkgs: OsPackages) -> list[str]:
        return sorted({s for t in pkgs.transactions() for s in t if STREAM_RE.fullmatch(s)})

    def module_documents(self, streams: list[str]) -> str:
        """The modulemd documents of `streams` from the upstreams' cached metadata, as one
        modules.yaml (the bundle's repository needs them: without them the driver's
        packages are filtered out and `dnf module enable` on the hosts fails)."""
        from ruamel.yaml import YAML

        wanted = {tuple(s.split(":", 1)) for s in streams}
        found: dict[tuple[str, str], str] = {}
        for path in sorted(self.root.glob("cache/*/repodata/*modules.yaml*")):
            yaml = YAML(typ="safe")
            for doc in yaml.load_all(_read_bounded(path)):
                data = doc.get("data", {}) if isinstance(doc, dict) else {}
                key = (str(data.get("name")), str(data.get("stream")))
                if doc.get("document") == "modulemd" and key in wanted:
                    buf = io.StringIO()
                    YAML(typ="safe", pure=True).dump(doc, buf)
                    found[key] = "---\n" + buf.getvalue() + "...\n"
        lost = sorted(f"{n}:{s}" for n, s in wanted - set(found))
        if lost:
            raise DnfError(f"no module metadata upstream for {', '.join(lost)}")
        return "".join(found[k] for k in sorted(found))


def module_profiles(pkgs: OsPackages, txn: list[str]) -> dict[str, str]:
    """stream -> profile the deploy installs: `fm` when the transaction carries fabric
    manager (NVSwitch systems, deploys/driver.py), else `default`."""
    fm = any(s.startswith("nvidia-fabric-manager") for s in txn)
    return {s: "fm" if fm else "default" for s in txn if STREAM_RE.fullmatch(s)}


def _read_bounded(path: Path) -> str:
    """A repository's modules.yaml as dnf cached it (gz, xz, bz2, zst or plain), read
    up to MAX_MODULES_BYTES: it came from a signed repomd.xml, but its size is bounded all
    the same."""
    limit = MAX_MODULES_BYTES + 1
    if path.name.endswith(".zst"):
        if shutil.which("zstd") is None:
            raise DnfError(f"{path.name}: zstd is needed to read it (Debian package zstd)")
        with subprocess.Popen(["zstd", "-dc", str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL) as proc:  # fmt: skip
            assert proc.stdout is not None
            data = proc.stdout.read(limit)
            proc.kill()
    else:
        opener: Any = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(path.suffix, open)
        with opener(path, "rb") as fh:
            data = fh.read(limit)
    if len(data) >= limit:
        raise DnfError(f"{path.name}: module metadata larger than {MAX_MODULES_BYTES} bytes")
    return data.decode("utf-8")


def publish_rpm_repo(
    rpms: list[Path],
    out: Path,
    key: Any,
    *,
    modules_yaml: str = "",
    upstream_keys: Sequence[Path] = (),
) -> None:
    """RPMs -> out/Packages + repodata (createrepo_c) [+ modules] + keys/upstream.asc,
    repomd.xml signed detached and armored (repomd.xml.asc) with the bundle key."""
    missing = [t for t in ("createrepo_c", "modifyrepo_c") if shutil.which(t) is None]
    if missing:
        raise DnfError(f"not installed: {', '.join(missing)} (Debian package createrepo-c)")
    (out / "Packages").mkdir(parents=True, exist_ok=True)
    for rpm in rpms:
        shutil.copy2(rpm, out / "Packages" / rpm.name)
    done = subprocess.run(
        ["createrepo_c", "--quiet", "--simple-md-filenames", "--no-database", str(out)],
        capture_output=True, text=True, timeout=DNF_TIMEOUT_S,
    )  # fmt: skip
    if done.returncode != 0:
        raise DnfError(f"createrepo_c: {done.stderr.strip()[-1500:]}")
    if modules_yaml:
        with tempfile.TemporaryDirectory(prefix="gpuprov-modules-") as tmp:
            (Path(tmp) / "modules.yaml").write_text(modules_yaml)
            done = subprocess.run(
                ["modifyrepo_c", "--simple-md-filenames", "--mdtype=modules",
                 str(Path(tmp) / "modules.yaml"), str(out / "repodata")],
                capture_output=True, text=True, timeout=DNF_TIMEOUT_S,
            )  # fmt: skip
        if done.returncode != 0:
            raise DnfError(f"modifyrepo_c: {done.stderr.strip()[-1500:]}")
    if upstream_keys:
        (out / "keys").mkdir(exist_ok=True)
        with open(out / "keys" / "upstream.asc", "wb") as fh:
            for path in upstream_keys:
                fh.write(path.read_bytes())
    repomd = out / "repodata" / "repomd.xml"
    key.detach_sign(repomd, repomd.with_name("repomd.xml.asc"))
