"""apt in an isolated root: the dependency closure of a bundle, resolved by apt itself.

The root is a directory with its own configuration (APT_CONFIG points at ROOT/apt.conf,
read before anything of the build machine's; it moves every Dir:: of apt into ROOT),
its own sources (deb822, `Signed-By` the keyrings the inventory names; nothing else is
trusted), lists, package cache and a dpkg status file that stands for the target hosts'
installed base. The build machine's /etc/apt, /var/lib/apt and /var/lib/dpkg are never
read or written.

    ROOT/apt.conf  ROOT/apt.conf.d/  ROOT/sources/upstream.sources  ROOT/keyrings/*.gpg
    ROOT/lists/  ROOT/cache/  ROOT/status  ARCHIVES/ (the shared .deb cache)

Resolution: `apt-get install -s` names the closure (every package apt would install on a
host with that base); `--print-uris` lists what is not yet cached (dry run); `install
--download-only` fetches it into ARCHIVES, each file checked by apt against the signed
indexes. A package apt cannot resolve fails the build and is named.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gpuprov.aptrepo.deb822 import parse_paragraphs
from gpuprov.errors import GpuprovError, InputError, Location, Problem
from gpuprov.inventory.bundle import AptSourceSpec

APT_TIMEOUT_S = 1800  # one apt-get call (an update or a download of the whole closure)
MAX_STATUS_BYTES = 256 * 1024 * 1024
# "Inst name [old] (version release [arch])" from `apt-get -s install`
INST_RE = re.compile(r"Inst (\S+) (?:\[\S+\] )?\((\S+) .*\[([a-z0-9-]+)\]\)(?: \[.*\])?")
# "'URL' file size hash" from `--print-uris -qq`; the hash is empty for some indexes
# (debian-security's: "... 2039888 " with nothing after the size).
URI_RE = re.compile(r"'(\S+)' (\S+) ([0-9]+) ?(\S*)")
PKG_NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
VERSION_RE = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9.+~-]+")
STATUS_FIELDS = (
    "Package", "Essential", "Priority", "Section", "Installed-Size", "Maintainer",
    "Architecture", "Multi-Arch", "Source", "Version", "Replaces", "Provides", "Depends",
    "Pre-Depends", "Breaks", "Conflicts", "Description",
)  # fmt: skip


class ResolveError(GpuprovError):
    """apt could not resolve or fetch a bundle's packages (named in the message)."""


@dataclass(frozen=True)
class DebRef:
    """One package of the closure as apt names it."""

    name: str
    version: str
    arch: str

    @property
    def filename(self) -> str:
        """The archive file apt stores it as (an epoch's ':' is '%3a' there)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


@dataclass(frozen=True)
class DebUri:
    url: str
    filename: str
    size: int
    checksum: str  # "SHA256:<hex>", "MD5Sum:<hex>" or "" (apt names the hash it checks)


def unresolvable(output: str) -> list[str]:
    """apt's reasons, one line each: unknown packages and versions, unmet dependencies."""
    reasons = []
    for line in output.splitlines():
        text = line.strip()
        if (
            text.startswith("E: ")
            and "unmet dependencies" not in text
            and "Unable to correct" not in text
        ):
            reasons.append(text[3:])
        elif re.fullmatch(r"\S+ : (Pre-)?Depends: .*", text) or re.fullmatch(
            r"(Pre-)?Depends: .*", text
        ):
            reasons.append(text)
    return reasons


class AptRoot:
    def __init__(self, root: Path, archives: Path, arch: str, sources: tuple[AptSourceSpec, ...]):
        self.root = Path(root).absolute()
        self.archives = Path(archives).absolute()
        self.arch = arch
        self.sources = sources

    # ---- set up ----------------------------------------------------------------------
    def prepare(self) -> None:
        r = self.root
        for sub in ("apt.conf.d", "sources", "keyrings", "lists/partial", "cache", "prefs.d"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (self.archives / "partial").mkdir(parents=True, exist_ok=True)
        stanzas = []
        for i, src in enumerate(self.sources):
            keyring = r / "keyrings" / f"source{i}.{'asc' if _armored(src.keyring) else 'gpg'}"
            shutil.copyfile(src.keyring, keyring)
            lines = [
                "Types: deb",
                f"URIs: {src.url}",
                f"Suites: {' '.join(src.suites)}",
            ]
            if src.components:
                lines.append(f"Components: {' '.join(src.components)}")
            lines += [f"Architectures: {self.arch}", f"Signed-By: {keyring}"]
            stanzas.append("\n".join(lines) + "\n")
        (r / "sources" / "upstream.sources").write_text("\n".join(stanzas))
        (r / "apt.conf").write_text(self._config())
        if not (r / "status").exists():
            (r / "status").touch()

    def _config(self) -> str:
        r = self.root
        values = {
            "Dir": "/",
            "Dir::Etc": f"{r}/",
            "Dir::Etc::main": f"{r}/apt.conf.none",  # nonexistent: this file is the config
            "Dir::Etc::parts": f"{r}/apt.conf.d",
            "Dir::Etc::sourcelist": f"{r}/sources/none.list",
            "Dir::Etc::sourceparts": f"{r}/sources",
            "Dir::Etc::trusted": f"{r}/trusted.none",  # trust is Signed-By only
            "Dir::Etc::trustedparts": f"{r}/trusted.d.none",
            "Dir::Etc::preferences": f"{r}/prefs.none",
            "Dir::Etc::preferencesparts": f"{r}/prefs.d",
            "Dir::State": f"{r}/",
            "Dir::State::lists": f"{r}/lists/",
            "Dir::State::status": f"{r}/status",
            "Dir::State::extended_states": f"{r}/extended_states",
            "Dir::Cache": f"{r}/cache/",
            "Dir::Cache::archives": f"{self.archives}/",
            "Dir::Log": f"{r}/log/",
            "Debug::NoLocking": "true",  # nobody else uses this root (the build holds a lock)
            "APT::Architecture": self.arch,
            "APT::Architectures": self.arch,
            "APT::Install-Recommends": "false",  # what the deploys' apt-get installs
            "APT::Get::Assume-Yes": "true",
            "Acquire::Languages": "none",
            "Acquire::Retries": "2",
            "Acquire::http::Timeout": "60",
            "Acquire::https::Timeout": "60",
            "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
            "Dpkg::Use-Pty": "false",
        }
        return "".join(f'{k} "{v}";\n' for k, v in values.items() if v)

    def set_status(self, text: str) -> None:
        (self.root / "status").write_text(text)

    # ---- running apt-get -------------------------------------------------------------
    def run(self, *args: str, timeout: int = APT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C.UTF-8",
            "APT_CONFIG": str(self.root / "apt.conf"),
        }
        for proxy in ("http_proxy", "https_proxy", "no_proxy"):
            if proxy in os.environ:
                env[proxy] = os.environ[proxy]
        try:
            return subprocess.run(
                ["apt-get", *args], capture_output=True, text=True, timeout=timeout, env=env
            )
        except subprocess.TimeoutExpired:
            raise ResolveError(
                f"apt-get {' '.join(args[:2])} took longer than {timeout} s"
            ) from None

    def update(self, label: str) -> None:
        done = self.run("update")
        errors = [
            line for line in (done.stdout + done.stderr).splitlines()
            if line.startswith(("E:", "W:", "Err:"))
        ]  # fmt: skip
        if done.returncode != 0 or any(e.startswith(("E:", "Err:")) for e in errors):
            raise ResolveError(
                f"{label}: apt-get update of the upstream sources failed:\n  "
                + "\n  ".join(errors or [done.stderr.strip()[-2000:]])
            )

    def closure(self, label: str, specs: list[str]) -> list[DebRef]:
        """Every package apt would install for `specs` on a host with the root's base."""
        done = self.run("install", "-s", "--no-install-recommends", *specs)
        if done.returncode != 0:
            reasons = unresolvable(done.stdout + "\n" + done.stderr)
            raise ResolveError(
                f"{label}: apt cannot resolve the bundle's packages:\n  "
                + "\n  ".join(reasons or [done.stderr.strip()[-2000:]])
            )
        refs = []
        for line in done.stdout.splitlines():
            m = INST_RE.fullmatch(line.strip())
            if m:
                refs.append(DebRef(*m.groups()))
        return sorted(refs, key=lambda d: (d.name, d.version))

    def print_uris(self, specs: list[str]) -> list[DebUri]:
        """What `download` would fetch now (cached files are not listed)."""
        done = self.run("install", "--print-uris", "-qq", "--no-install-recommends", *specs)
        if done.returncode != 0:
            raise ResolveError(done.stderr.strip()[-2000:])
        out = []
        for line in done.stdout.splitlines():
            m = URI_RE.fullmatch(line.rstrip("\n"))
            if m:
                out.append(DebUri(m.group(1), m.group(2), int(m.group(3)), m.group(4)))
        return out

    def download(self, label: str, specs: list[str]) -> None:
        done = self.run("install", "--download-only", "--no-install-recommends", *specs)
        if done.returncode != 0:
            reasons = unresolvable(done.stdout + "\n" + done.stderr)
            raise ResolveError(
                f"{label}: apt could not download the bundle's packages:\n  "
                + "\n  ".join(reasons or [done.stderr.strip()[-2000:]])
            )

    # ---- the base set ----------------------------------------------------------------
    def available(self) -> list[dict[str, str]]:
        """Every paragraph of the fetched Packages indexes."""
        out = []
        for path in sorted((self.root / "lists").glob("*_Packages")):
            out += parse_paragraphs(
                path.read_text(encoding="utf-8", errors="replace"), source=str(path)
            )
        return out

    def minimal_status(self, priorities: list[str], extra: list[str]) -> str:
        """A dpkg status for the OS's minimal install (debootstrap's minbase: every package
        of `priorities`, the Essential ones and `extra`, with their closure), written from
        the upstream indexes; the root's status is left empty while it is resolved."""
        paragraphs = self.available()
        seeds = sorted(
            {
                p["Package"]
                for p in paragraphs
                if p.get("Priority") in priorities or p.get("Essential") == "yes"
            }
            | set(extra)
        )
        self.set_status("")
        refs = self.closure("the minimal install", seeds)
        by_key = {(p["Package"], p["Version"], p.get("Architecture")): p for p in paragraphs}
        text = []
        for ref in refs:
            p = by_key.get((ref.name, ref.version, ref.arch))
            if p is None:
                continue
            fields = {k: p[k] for k in STATUS_FIELDS if k in p}
            fields = {"Package": fields.pop("Package"), "Status": "install ok installed", **fields}
            text.append("".join(f"{k}: {v}\n" for k, v in fields.items()))
        return "\n".join(text)


def _armored(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(36).startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")


def read_status_file(path: Path) -> str:
    """A real host's /var/lib/dpkg/status, checked to be one (bounded, deb822, installed
    paragraphs with a package name and version) before apt reads it."""
    where = Location(str(path))
    try:
        if path.stat().st_size > MAX_STATUS_BYTES:
            raise InputError([Problem(where, "dpkg status file larger than 256 MiB")])
        text = path.read_text(encoding="utf-8")
        paragraphs = parse_paragraphs(text, source=str(path))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError([Problem(where, f"not a dpkg status file: {exc}")]) from None
    for p in paragraphs:
        if not PKG_NAME_RE.fullmatch(p.get("Package", "")) or "Status" not in p:
            raise InputError([Problem(where, f"not a dpkg status file: paragraph {p.get('Package')!r} "
                                      "has no valid Package or Status field")])  # fmt: skip
    if not paragraphs:
        raise InputError([Problem(where, "dpkg status file lists no packages")])
    return text
