"""Preflight: is this host fit for an NVIDIA driver? Refuse it clearly if not.

Runbook:
1. Read the host's state in one round trip (composite fact).
2. Refuse: unsupported OS, too little free disk, kernel headers missing and not
   installable, Secure Boot on with a driver that would need signing, GPUs on the PCI
   bus that do not match the host's profile.
3. Warn: headers missing but installable (the driver deploy installs them), nouveau loaded.
4. Record who this host is in /etc/gpuprov/host.json (the one change preflight makes).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from gpuprov.deploys.preflight_fact import PreflightData, PreflightFact
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from gpuprov.engine.connect import CLUSTER_DATA_KEY, HOST_DATA_KEY
from gpuprov.engine.refusal import HostRefused, warn
from gpuprov.inventory.model import Host

SUPPORTED_OS = ("debian12", "ubuntu2204", "ubuntu2404", "rhel9")
MIN_FREE_GB = 10  # driver + CUDA toolkits + DKMS builds; override with host var gpuprov_min_free_gb
TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "host.json.j2"


def _profile(name: str):
    from gpuprov import tables

    get_profile = getattr(tables, "get_profile", None)
    if get_profile is None:  # TODO(engine): drop once the data tables are on main
        return None
    return get_profile(name)


def review(facts: PreflightData, me: Host) -> list[str]:
    """Refuse (raise HostRefused) or return warnings. Pure: unit-tested on data.

    The host var `gpuprov_preflight_ignore` (a list of check names: os, disk, headers,
    secure_boot, gpus) turns those refusals into warnings, for labs and for operators who
    know better; it is never the default.
    """
    warnings: list[str] = []
    ignore = set(me.vars.get("gpuprov_preflight_ignore") or ())

    def refuse(check: str, reason: str, fix: str) -> None:
        if check in ignore:
            warnings.append(f"{reason} (ignored: gpuprov_preflight_ignore has {check!r})")
            return
        raise HostRefused(reason, fix)

    if facts.os_key not in SUPPORTED_OS:
        refuse(
            "os",
            f"unsupported OS {facts.os_name or facts.os_key!r}",
            f"reinstall with one of {', '.join(SUPPORTED_OS)}",
        )
    min_gb = float(me.vars.get("gpuprov_min_free_gb", MIN_FREE_GB))
    if facts.free_bytes is not None and facts.free_bytes < min_gb * 1e9:
        refuse(
            "disk",
            f"only {facts.free_bytes / 1e9:.1f} GB free on / (need {min_gb:g} GB)",
            "free disk space or grow the root filesystem",
        )
    if not facts.headers_installed:
        pkg = f"linux-headers-{facts.kernel}" if facts.os_key != "rhel9" else "kernel-devel"
        if facts.headers_candidate or facts.os_key == "rhel9":
            warnings.append(f"{pkg} not installed; the driver deploy installs it")
        else:
            refuse(
                "headers",
                f"no kernel headers for the running kernel {facts.kernel} and none installable",
                f"make {pkg} available in the mirror, or boot a kernel that has them",
            )
    if facts.secure_boot and me.stack is not None:
        refuse(
            "secure_boot",
            "Secure Boot is on and the NVIDIA kernel modules would need signing",
            "disable Secure Boot in the firmware, or enroll a MOK and sign the modules",
        )
    if facts.nouveau_loaded:
        warnings.append("nouveau is loaded; the driver deploy blacklists it (reboot needed)")
    if me.profile:
        try:
            warnings += _check_gpus(facts, me)
        except HostRefused as exc:
            refuse("gpus", exc.reason, exc.fix or "")
    return warnings


def _check_gpus(facts: PreflightData, me: Host) -> list[str]:
    profile = _profile(me.profile or "")
    if profile is None:
        return [f"profile {me.profile!r}: GPU tables not available, PCI check skipped"]
    if not facts.lspci_available:
        raise HostRefused("lspci is not installed", "install pciutils")
    found = Counter(d.pci_id for d in facts.gpus)
    wanted = set(profile.gpu_pci_ids)
    matching = sum(n for pid, n in found.items() if pid in wanted)
    if matching != profile.gpu_count or sum(found.values()) != matching:
        seen = ", ".join(f"{n}x {pid}" for pid, n in sorted(found.items())) or "no NVIDIA GPU"
        raise HostRefused(
            f"PCI bus shows {seen}; profile {profile.name} expects "
            f"{profile.gpu_count}x {'/'.join(profile.gpu_pci_ids)}",
            "fix the host's profile in the inventory or reseat/replace the GPUs",
        )
    if profile.nvswitch and len(facts.nvswitches) != profile.nvswitch_count:
        raise HostRefused(
            f"{len(facts.nvswitches)} NVSwitches on the PCI bus; profile {profile.name} "
            f"expects {profile.nvswitch_count}",
            "check the baseboard (NVSwitch not enumerated) or the host's profile",
        )
    return []


@deploy("Preflight")
def preflight() -> None:
    me: Host = host.data.get(HOST_DATA_KEY)
    facts = host.get_fact(PreflightFact)
    for text in review(facts, me):
        warn(text)

    root = str(host.data.get("gpuprov_root") or "").rstrip("/")
    files.directory(
        name="Create /etc/gpuprov",
        path=f"{root}/etc/gpuprov",
        mode="755",
    )
    files.template(
        name="Record the host's identity in /etc/gpuprov/host.json",
        src=str(TEMPLATE),
        dest=f"{root}/etc/gpuprov/host.json",
        mode="644",
        # (not `group`/`user`: files.template takes those as the file's owner)
        host_name=me.name,
        host_group=me.group,
        host_profile=me.profile,
        host_role=me.role,
        cluster_name=host.data.get(CLUSTER_DATA_KEY),
    )
