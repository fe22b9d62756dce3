"""A minimal composite fact: everything preflight and `gpuprov facts` need, in ONE
shell command (one SSH round trip per host).

TODO(engine): replace with gpuprov.facts.host_state.HostState when the facts helper's
branch lands on main; the keys below mirror what that fact is expected to carry.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from pyinfra.api import FactBase

SCRIPT = r"""
. /etc/os-release 2>/dev/null
echo "os_id=${ID:-}"; echo "os_version=${VERSION_ID:-}"; echo "os_name=${PRETTY_NAME:-}"
k=$(uname -r); echo "kernel=$k"; echo "arch=$(uname -m)"
if [ -e "/lib/modules/$k/build" ] || [ -d "/usr/src/kernels/$k" ]; then echo headers=1
else
  echo headers=0
  # only when missing: apt-cache loads the whole package cache (seconds without pkgcache.bin)
  if command -v apt-cache >/dev/null 2>&1; then
    echo "headers_candidate=$(apt-cache policy "linux-headers-$k" 2>/dev/null | awk '/Candidate:/{print $2}')"
  fi
fi
sb=""
if command -v mokutil >/dev/null 2>&1; then sb=$(mokutil --sb-state 2>/dev/null | head -n1); fi
if [ -z "$sb" ]; then
  f=$(ls /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | head -n1)
  if [ -n "$f" ]; then
    b=$(od -An -t u1 "$f" 2>/dev/null | awk '{print $NF}')
    if [ "$b" = 1 ]; then sb="SecureBoot enabled"; else sb="SecureBoot disabled"; fi
  elif [ ! -d /sys/firmware/efi ]; then sb="SecureBoot unsupported (BIOS boot)"; fi
fi
echo "secure_boot=$sb"
if [ -d /sys/module/nouveau ]; then echo nouveau=1; else echo nouveau=0; fi
if [ -r /sys/module/nvidia/version ]; then echo "driver_loaded=$(cat /sys/module/nvidia/version)"; fi
echo "driver_installed=$(modinfo -F version nvidia 2>/dev/null | head -n1)"
echo "free_kb=$(df -Pk / 2>/dev/null | awk 'NR==2{print $4}')"
if command -v lspci >/dev/null 2>&1; then lspci -Dnn -d 10de: 2>/dev/null | sed 's/^/pci=/'; else echo "pci_tool=missing"; fi
"""

_PCI = re.compile(r"^(\S+)\s+(.*?)\s+\[([0-9a-f]{4})\]:\s+(.*?)\s+\[(10de):([0-9a-f]{4})\]", re.I)


@dataclass
class PciDevice:
    slot: str
    class_id: str  # "0302"
    name: str  # "NVIDIA Corporation GH100 [H100 SXM5 80GB HBM3]"
    pci_id: str  # "10de:2330"


@dataclass
class PreflightData:
    os_id: str = ""
    os_version: str = ""
    os_name: str = ""
    kernel: str = ""
    arch: str = ""
    headers_installed: bool = False
    headers_candidate: str | None = None  # apt candidate version, None when unknown
    secure_boot: bool | None = None  # None: could not tell
    secure_boot_text: str = ""
    nouveau_loaded: bool = False
    driver_loaded: str | None = None
    driver_installed: str | None = None
    free_bytes: int | None = None
    lspci_available: bool = True
    pci: list[PciDevice] = field(default_factory=list)

    @property
    def os_key(self) -> str:
        """ "ubuntu2204", "debian12", "rhel9" (major version for RHEL-likes)."""
        version = self.os_version
        if self.os_id in ("rhel", "rocky", "almalinux", "centos"):
            return f"rhel{version.split('.')[0]}"
        return f"{self.os_id}{version.replace('.', '')}"

    @property
    def gpus(self) -> list[PciDevice]:
        return [d for d in self.pci if d.class_id.startswith("03")]

    @property
    def nvswitches(self) -> list[PciDevice]:
        return [d for d in self.pci if d.class_id == "0680"]

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["os_key"] = self.os_key
        return out


def parse(output: list[str]) -> PreflightData:
    data = PreflightData()
    for line in output:
        key, _, value = line.partition("=")
        value = value.strip()
        if key == "pci":
            m = _PCI.match(value)
            if m:
                data.pci.append(PciDevice(m[1], m[3].lower(), m[4], f"10de:{m[6].lower()}"))
        elif key in ("os_id", "os_version", "os_name", "kernel", "arch"):
            setattr(data, key, value)
        elif key == "headers":
            data.headers_installed = value == "1"
        elif key == "headers_candidate":
            data.headers_candidate = value if value and value != "(none)" else None
        elif key == "secure_boot":
            data.secure_boot_text = value
            low = value.lower()
            data.secure_boot = (
                True
                if "enabled" in low
                else False
                if ("disabled" in low or "unsupported" in low)
                else None
            )
        elif key == "nouveau":
            data.nouveau_loaded = value == "1"
        elif key in ("driver_loaded", "driver_installed"):
            setattr(data, key, value or None)
        elif key == "free_kb" and value.isdigit():
            data.free_bytes = int(value) * 1024
        elif key == "pci_tool":
            data.lspci_available = False
    return data


class PreflightFact(FactBase):
    """OS, kernel, headers, Secure Boot, nouveau, NVIDIA PCI devices, driver, free disk."""

    def command(self) -> str:
        return SCRIPT

    def process(self, output: list[str]) -> PreflightData:  # type: ignore[override]
        return parse(output)
