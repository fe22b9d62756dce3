"""`HostState`: one pyinfra fact, one SSH round trip, everything the deploys and `verify`
compare against (a no-op apply reads each host's state in about one round trip: docs/engine.md).

The shell script is the data file host_state.sh (POSIX sh; tested under dash). Its output is
a sequence of sections; `parse_host_state` turns them into `HostStateData` with the pure
parsers of gpuprov.parsers. A section whose tool is missing reads as None/empty, never as
an error; garbage from a present tool is recorded in `HostStateData.problems`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

from pyinfra.api import FactBase

from gpuprov.parsers import ParseError
from gpuprov.parsers.dpkg_state import DpkgState, parse_dpkg_state
from gpuprov.parsers.lspci import PciDevice, nvidia_gpus, nvswitches, parse_lspci
from gpuprov.parsers.nvidia_smi_model import NvidiaSmiReport
from gpuprov.parsers.nvidia_smi_xml import parse_nvidia_smi_xml
from gpuprov.parsers.system import (
    InstalledPackage,
    OsRelease,
    parse_apt_mark_showhold,
    parse_df_free_bytes,
    parse_dpkg_query,
    parse_mokutil_sb_state,
    parse_nvidia_module_version,
    parse_os_release,
    parse_versionlock_list,
)

_FACTS = resources.files("gpuprov.facts")
# unit_states.sh defines the units' states function, shared with the mirror host's section.
UNIT_STATES_SH = _FACTS.joinpath("unit_states.sh").read_text()
SCRIPT = UNIT_STATES_SH + _FACTS.joinpath("host_state.sh").read_text()
MISSING = 127
VERSION_MISMATCH = "Driver/library version mismatch"
_BEGIN = re.compile(r"^@@gpuprov:begin (?P<name>[a-z-]+)$")
_END = re.compile(r"^@@gpuprov:end (?P<name>[a-z-]+) (?P<rc>\d+)$")


@dataclass(frozen=True)
class Section:
    name: str
    rc: int
    output: str

    @property
    def present(self) -> bool:
        return self.rc != MISSING


@dataclass(frozen=True)
class NvidiaSmiState:
    present: bool  # nvidia-smi is installed
    rc: int | None = None
    report: NvidiaSmiReport | None = None
    error: str | None = None  # its message when it failed ("Failed to initialize NVML: ...")

    @property
    def ok(self) -> bool:
        return self.report is not None

    @property
    def version_mismatch(self) -> bool:
        """Userspace upgraded but the old kernel module still loaded: a reboot is due."""
        return bool(self.error and VERSION_MISMATCH in self.error)


@dataclass(frozen=True)
class ServiceState:
    active: str | None  # "active" | "inactive" | "failed" | ... ; None if unknown
    enabled: str | None  # "enabled" | "disabled" | "masked" | ... ; None if no unit


@dataclass
class HostStateData:
    os: OsRelease | None = None
    kernel: str | None = None
    headers_present: bool = False
    secure_boot: bool | None = None  # None: mokutil absent or no EFI
    nouveau_loaded: bool = False
    pci_devices: list[PciDevice] | None = None  # None: lspci absent
    nvidia_module_version: str | None = None  # the loaded kernel module
    nvswitch_devices: list[str] = field(default_factory=list)  # once the driver is in
    packages: dict[str, InstalledPackage] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    locked: dict[str, str] = field(default_factory=dict)  # dnf versionlock: name -> ver-rel
    root_free_bytes: int | None = None
    nvidia_smi: NvidiaSmiState = field(default_factory=lambda: NvidiaSmiState(present=False))
    services: dict[str, ServiceState] = field(default_factory=dict)
    cdi_specs: list[str] | None = None  # None: no /etc/cdi
    cuda_link: str | None = None  # readlink /usr/local/cuda
    cuda_alternative: tuple[str, str] | None = None  # ("auto"|"manual", its target)
    cuda_dirs: list[str] = field(default_factory=list)
    dpkg: DpkgState | None = None  # None: not a dpkg host
    problems: list[str] = field(default_factory=list)  # sections that did not parse

    @property
    def pci_gpus(self) -> list[PciDevice]:
        return nvidia_gpus(self.pci_devices or [])

    @property
    def pci_nvswitches(self) -> list[PciDevice]:
        return nvswitches(self.pci_devices or [])

    @property
    def cuda_default(self) -> str | None:
        """Where /usr/local/cuda leads: through the alternatives link when it is one."""
        if self.cuda_link == "/etc/alternatives/cuda" and self.cuda_alternative:
            return self.cuda_alternative[1]
        return self.cuda_link

    def package_version(self, name: str) -> str | None:
        pkg = self.packages.get(name)
        return pkg.version if pkg else None


def section_command(name: str, script: str, stderr: str = "2>&1") -> str:
    """`script` as one section of the output split_sections reads (its exit status as rc)."""
    return (
        f"printf '@@gpuprov:begin {name}\\n'; ( {script} ) {stderr}; "
        f"printf '\\n@@gpuprov:end {name} %s\\n' $?"
    )


def split_sections(text: str) -> dict[str, Section]:
    sections: dict[str, Section] = {}
    current: str | None = None
    body: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if m := _BEGIN.match(line):
            if current is not None:
                raise ParseError("HostState", f"section {current!r} not ended", lineno)
            current, body = m["name"], []
        elif (m := _END.match(line)) and current is not None and current == m["name"]:
            # The script prints one newline before the end marker so output without a
            # trailing newline cannot swallow it; drop that line again.
            if body and body[-1] == "":
                body.pop()
            sections[current] = Section(current, int(m["rc"]), "\n".join(body))
            current = None
        elif current is not None:
            body.append(line)
    if current is not None:
        raise ParseError("HostState", f"output ends inside section {current!r} (truncated?)")
    return sections


def parse_host_state(text: str) -> HostStateData:
    s = split_sections(text)
    if "os-release" not in s:
        raise ParseError("HostState", "no os-release section: not the HostState script output")
    data = HostStateData()

    def section(name: str) -> Section | None:
        sec = s.get(name)
        return sec if sec is not None and sec.present else None

    def guarded(name: str, parse):  # record garbage, keep the rest of the facts
        sec = section(name)
        if sec is None:
            return None
        try:
            return parse(sec)
        except ParseError as exc:
            data.problems.append(str(exc))
            return None

    data.os = guarded("os-release", lambda x: parse_os_release(x.output))
    data.kernel = guarded("kernel", lambda x: x.output.strip() or None)
    data.headers_present = guarded("headers", lambda x: x.output.strip() == "yes") or False
    data.secure_boot = guarded(
        "secureboot", lambda x: parse_mokutil_sb_state(x.output) if x.output.strip() else None
    )
    data.nouveau_loaded = guarded("nouveau", lambda x: x.output.strip() == "loaded") or False
    data.pci_devices = guarded("lspci", lambda x: parse_lspci(x.output) if x.rc == 0 else [])
    data.nvidia_module_version = guarded(
        "nvidia-module", lambda x: parse_nvidia_module_version(x.output)
    )
    data.nvswitch_devices = guarded("nvswitch", lambda x: x.output.split()) or []
    data.packages = guarded("packages", lambda x: parse_dpkg_query(x.output)) or {}
    data.held = guarded("holds", lambda x: parse_apt_mark_showhold(x.output)) or set()
    data.locked = guarded("versionlock", lambda x: parse_versionlock_list(x.output)) or {}
    data.root_free_bytes = guarded("df", lambda x: parse_df_free_bytes(x.output))
    data.dpkg = guarded("dpkg", lambda x: parse_dpkg_state(x.output))
    data.nvidia_smi = _nvidia_smi(s.get("nvidia-smi"))
    data.services = guarded("services", lambda x: _services(x.output)) or {}
    data.cdi_specs = guarded("cdi", lambda x: x.output.split())
    cuda = guarded("cuda", lambda x: x.output.splitlines()) or []
    for line in cuda:
        kind, _, value = line.partition(" ")
        if kind == "link":
            data.cuda_link = value or None
        elif kind == "dir":
            data.cuda_dirs.append(value)
        elif kind == "alt":
            mode, _, target = value.partition(" ")
            data.cuda_alternative = (mode, target)
    return data


def _nvidia_smi(sec: Section | None) -> NvidiaSmiState:
    if sec is None or not sec.present:
        return NvidiaSmiState(present=False)
    if sec.rc != 0:
        return NvidiaSmiState(True, sec.rc, None, sec.output.strip() or f"exit status {sec.rc}")
    try:
        return NvidiaSmiState(True, 0, parse_nvidia_smi_xml(sec.output))
    except ParseError as exc:
        return NvidiaSmiState(True, 0, None, str(exc))


def _services(text: str) -> dict[str, ServiceState]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            raise ParseError("systemctl is-active/is-enabled", f"unexpected line {line!r}")
        name, active, enabled = parts
        out[name] = ServiceState(
            None if active == "-" else active, None if enabled == "-" else enabled
        )
    return out


class HostState(FactBase[HostStateData]):
    """Everything gpuprov compares against, in one round trip (see host_state.sh)."""

    def command(self) -> str:
        return SCRIPT

    def process(self, output: list[str]) -> HostStateData:
        return parse_host_state("\n".join(output))


class NvidiaSmiXml(FactBase[NvidiaSmiState]):
    """Just `nvidia-smi -q -x` (health gates between waves), tolerant of a failing tool."""

    def command(self) -> str:
        return (
            "if command -v nvidia-smi >/dev/null 2>&1; then "
            "out=$(nvidia-smi -q -x 2>&1); rc=$?; "
            "printf '@@gpuprov:begin nvidia-smi\\n%s\\n@@gpuprov:end nvidia-smi %s\\n' \"$out\" $rc; "
            "else printf '@@gpuprov:begin nvidia-smi\\n\\n@@gpuprov:end nvidia-smi 127\\n'; fi"
        )

    def process(self, output: list[str]) -> NvidiaSmiState:
        return _nvidia_smi(split_sections("\n".join(output)).get("nvidia-smi"))
