"""Preflight: is this host fit for an NVIDIA driver? Refuse it clearly if not.

Runbook:
1. Read the host's state in one round trip (gpuprov.facts.node_facts: HostState plus what
   the GPU stack compares against, shared with it).
2. Evaluate every check, then refuse the host once with all that failed, most
   fundamental first (CHECKS): unsupported OS, an OS other than the inventory's
   stack.os, GPUs/NVSwitches on the PCI bus that do not match the host's profile, too
   little free disk, kernel headers missing and not installable, Secure Boot on with a
   driver that would need signing.
3. Warn: headers missing but installable (the driver deploy installs them), nouveau loaded.
4. Record who this host is in /etc/gpuprov/host.json (the one change preflight makes).

The host var `gpuprov_preflight_ignore` (the codes in CHECKS) turns those refusals into
warnings, for labs and operators who know better.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyinfra import host
from pyinfra.api import deploy

from gpuprov.checks import PREFLIGHT_CHECKS
from gpuprov.engine.connect import CLUSTER_DATA_KEY, HOST_DATA_KEY
from gpuprov.engine.refusal import HostRefused, Refusal, warn
from gpuprov.facts.apt import HeadersCandidate
from gpuprov.facts.host_state import HostStateData
from gpuprov.facts.node_facts import read_node_facts
from gpuprov.facts.scratch_root import root_prefix
from gpuprov.inventory.model import Host
from gpuprov.operations.files import managed_file
from gpuprov.paths import IDENTITY_FILE
from gpuprov.rendering import render
from gpuprov.tables import SystemProfile, get_profile, os_ids

SUPPORTED_OS = tuple(os_ids())  # every OS of gpuprov/data/packages.yaml
CHECKS = PREFLIGHT_CHECKS  # the stable codes, most fundamental first (gpuprov.checks)
MIN_FREE_GB = 10  # driver + CUDA toolkits + DKMS builds; host var gpuprov_min_free_gb


@dataclass
class Findings:
    """Everything preflight found on one host: refusals (most fundamental first) and
    warnings (including refusals the operator chose to ignore)."""

    refusals: list[Refusal] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def review(state: HostStateData, me: Host, headers_candidate: str | None = None) -> Findings:
    """Evaluate every check (none stops the others) and sort the refusals by CHECKS.
    Pure: unit-tested on data."""
    found = Findings()
    ignore = set(me.vars.get("gpuprov_preflight_ignore") or ())

    def refuse(check: str, reason: str, fix: str) -> None:
        if check in ignore:
            found.warnings.append(f"{reason} (ignored: gpuprov_preflight_ignore has {check!r})")
        else:
            found.refusals.append(Refusal(reason, fix, check))

    os_key = state.os.os_key if state.os else "unknown"
    if os_key not in SUPPORTED_OS:
        name = state.os.pretty_name if state.os and state.os.pretty_name else os_key
        refuse("os", f"unsupported OS {name!r}", f"reinstall with one of {', '.join(SUPPORTED_OS)}")
    wanted = me.stack.os if me.stack else None
    if wanted and state.os is not None and wanted != os_key:
        refuse(
            "stack_os",
            f"the inventory says stack.os {wanted}, the host runs {os_key}",
            f"fix stack.os for {me.name} (package names differ per OS), or reinstall it",
        )
    min_gb = float(me.vars.get("gpuprov_min_free_gb", MIN_FREE_GB))
    free = state.root_free_bytes
    if free is not None and free < min_gb * 1e9:
        refuse(
            "disk",
            f"only {free / 1e9:.1f} GB free on / (need {min_gb:g} GB)",
            "free disk space or grow the root filesystem",
        )
    # Kernel headers build the NVIDIA modules: GPU hosts only (a mirror host builds none).
    if not state.headers_present and me.role == "gpu":
        rhel = os_key.startswith("rhel")
        pkg = "kernel-devel" if rhel else f"linux-headers-{state.kernel}"
        if headers_candidate or rhel:
            found.warnings.append(f"{pkg} not installed; the driver deploy installs it")
        else:
            refuse(
                "headers",
                f"no kernel headers for the running kernel {state.kernel} and none installable",
                f"make {pkg} available in the mirror, or boot a kernel that has them",
            )
    if state.secure_boot and me.stack is not None:
        refuse(
            "secure_boot",
            "Secure Boot is on and the NVIDIA kernel modules would need signing",
            "disable Secure Boot in the firmware, or enroll a MOK and sign the modules",
        )
    if state.nouveau_loaded:
        found.warnings.append("nouveau is loaded; the driver deploy blacklists it (reboot needed)")
    if me.profile and me.role == "gpu":
        problem = pci_problem(state, get_profile(me.profile))
        if problem:
            refuse("gpus", *problem)
    found.refusals.sort(key=lambda r: CHECKS.index(r.code or ""))
    return found


def pci_problem(state: HostStateData, profile: SystemProfile) -> tuple[str, str] | None:
    """(reason, fix) when the PCI bus does not show the profile's GPUs and NVSwitches."""
    from gpuprov.verify.verdicts import pci_checks

    if state.pci_devices is None:
        return "lspci is not installed: cannot check the GPUs", "install pciutils"
    failed = [c for c in pci_checks(state, profile) if not c.ok]
    if not failed:
        return None
    seen = ", ".join(f"{d.pci_id} {d.name}" for d in state.pci_gpus) or "no NVIDIA GPU"
    detail = "; ".join(c.detail for c in failed)
    return (
        f"PCI bus shows {seen}: {detail}",
        "fix the host's profile in the inventory, or reseat/replace the GPUs",
    )


def identity_json(me: Host, cluster_name: str | None) -> str:
    """/etc/gpuprov/host.json: who this host is, for operators and later tools."""
    return render(
        "host.json.j2",
        host_name=me.name,
        host_group=me.group,
        host_profile=me.profile,
        host_role=me.role,
        cluster_name=cluster_name,
    )


@deploy("Preflight")
def preflight() -> None:
    me: Host = host.data.get(HOST_DATA_KEY)
    facts = read_node_facts()  # the GPU stack reuses this answer
    state = facts.state
    candidate = None
    ignored = me.vars.get("gpuprov_preflight_ignore") or ()
    debian = state.os is not None and state.os.family == "debian"
    if not state.headers_present and debian and me.role == "gpu" and "headers" not in ignored:
        candidate = host.get_fact(HeadersCandidate)
    found = review(state, me, candidate)
    for text in found.warnings:  # recorded first: a refused host shows its warnings too
        warn(text)
    if found.refusals:
        raise HostRefused.every(found.refusals)

    root = root_prefix(host)
    identity = identity_json(me, host.data.get(CLUSTER_DATA_KEY))
    managed_file(
        name="Record the host's identity in /etc/gpuprov/host.json",
        path=f"{root}{IDENTITY_FILE}",
        content=identity,
        mode="644",
        current=facts.identity,
    )
