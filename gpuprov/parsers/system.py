"""Small system tool outputs: os-release, mokutil, dpkg-query/rpm, apt-mark, df, the
loaded NVIDIA kernel module version."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from gpuprov.parsers import ParseError

RHEL_LIKE = ("rhel", "rocky", "almalinux", "centos", "ol")


@dataclass(frozen=True)
class OsRelease:
    id: str  # "ubuntu"
    version_id: str  # "22.04"
    os_key: str  # "ubuntu2204" | "debian12" | "rhel9" (RHEL clones map to rhel)
    pretty_name: str = ""
    id_like: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return "rhel" if self.os_key.startswith("rhel") else "debian"


def parse_os_release(text: str) -> OsRelease:
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z0-9_]+", key):
            raise ParseError("/etc/os-release", f"not KEY=value: {line[:80]!r}", lineno)
        try:
            parts = shlex.split(value)
        except ValueError:
            raise ParseError("/etc/os-release", f"bad quoting: {line[:80]!r}", lineno) from None
        values[key] = parts[0] if parts else ""
    os_id = values.get("ID", "").lower()
    version = values.get("VERSION_ID", "")
    if not os_id:
        raise ParseError("/etc/os-release", "no ID= line")
    like = tuple(values.get("ID_LIKE", "").split())
    major = version.split(".")[0]
    if os_id == "ubuntu":
        key = "ubuntu" + version.replace(".", "")
    elif os_id in RHEL_LIKE or "rhel" in like:
        key = "rhel" + major
    else:
        key = os_id + major
    return OsRelease(os_id, version, key, values.get("PRETTY_NAME", ""), like)


def parse_mokutil_sb_state(text: str) -> bool | None:
    """True/False for Secure Boot on/off; None when the machine has no EFI variables."""
    t = text.strip().lower()
    if "secureboot enabled" in t:
        return True
    if "secureboot disabled" in t:
        return False
    if "not supported" in t or "efi variables" in t:
        return None
    raise ParseError("mokutil --sb-state", f"unexpected output {text.strip()[:100]!r}")


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str
    status: str  # dpkg "install ok installed", "hold ok installed", "deinstall ok config-files"

    @property
    def installed(self) -> bool:
        return self.status.endswith(" installed")


def parse_dpkg_query(text: str) -> dict[str, InstalledPackage]:
    """`dpkg-query -W -f='${Package}\\t${Version}\\t${Status}\\n'` (also the rpm form in
    HostState). Only installed packages are kept: dpkg also lists removed ones with config."""
    out: dict[str, InstalledPackage] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        parts = raw.split("\t")
        if len(parts) != 3 or not parts[0]:
            raise ParseError(
                "dpkg-query -W", f"expected 3 tab-separated fields: {raw[:100]!r}", lineno
            )
        pkg = InstalledPackage(parts[0].split(":")[0], parts[1], parts[2].strip())
        if pkg.installed:
            out[pkg.name] = pkg
    return out


def parse_apt_mark_showhold(text: str) -> set[str]:
    names = {line.strip() for line in text.splitlines() if line.strip()}
    bad = [n for n in names if " " in n]
    if bad:
        raise ParseError("apt-mark showhold", f"not a package name: {bad[0][:80]!r}")
    return names


# One entry of dnf's versionlock.list as `dnf versionlock add` writes it:
# "nvidia-driver-3:580.95.05-1.el9.*" (name-epoch:version-release.arch, arch a glob).
VERSIONLOCK_RE = re.compile(
    r"(?P<name>[A-Za-z0-9._+-]+?)-(?:(?P<epoch>[0-9]+):)?(?P<version>[A-Za-z0-9._+~^]+)"
    r"-(?P<release>[A-Za-z0-9_+~^]+(?:\.[A-Za-z0-9_+~^]+)*?)\.(?P<arch>\*|[A-Za-z0-9_]+)"
)


def parse_versionlock_list(text: str) -> dict[str, str]:
    """name -> "version-release" locked, from /etc/dnf/plugins/versionlock.list (comments
    dropped by the fact). Exclude entries ("!name-...") lock nothing and are skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        m = VERSIONLOCK_RE.fullmatch(line)
        if m is None:
            raise ParseError("versionlock.list", f"not a name-[epoch:]version-release.arch entry: {line[:80]!r}")  # fmt: skip
        out[m["name"]] = f"{m['version']}-{m['release']}"
    return out


def parse_df_free_bytes(text: str) -> int:
    """Available bytes of the (first) filesystem in `df -Pk PATH` output."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].startswith("Filesystem"):
        raise ParseError("df -Pk", f"no header/data lines in {text.strip()[:100]!r}")
    fields = lines[1].split()
    if len(fields) < 6 or not fields[3].isdigit():
        raise ParseError("df -Pk", f"unexpected line {lines[1][:100]!r}", 2)
    return int(fields[3]) * 1024


_VERSION = re.compile(r"\b(\d{3}\.\d+(?:\.\d+)?)\b")


def parse_nvidia_module_version(text: str) -> str:
    """`/sys/module/nvidia/version` ("580.95.05") or `/proc/driver/nvidia/version`
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.161.08  Wed ...")."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    m = _VERSION.search(first)
    if not m:
        raise ParseError("nvidia module version", f"no driver version in {first[:100]!r}")
    return m.group(1)
