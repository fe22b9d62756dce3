"""What every GPU-node deploy reads, gathered once per host.

`node_context()` reads the host's state in two facts (HostState, and DeployExtras for the
files the deploys manage), resolves the host's packages from the data tables, and hands
the result to each deploy. Deploys record what they will change here (`reboot_reasons`,
`driver_changing`) so later deploys can plan on it without asking the host again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pyinfra import host

from gpuprov.checks import resolve_modules
from gpuprov.facts.host_state import HostStateData, ServiceState
from gpuprov.facts.node_facts import read_node_facts
from gpuprov.inventory.model import Host, Stack
from gpuprov.tables import PackageSet, SystemProfile, get_profile, packages_for

HOST_DATA_KEY = "gpuprov_host"  # gpuprov.engine.connect.HOST_DATA_KEY
MIRROR_DATA_KEY = "gpuprov_mirror_client"  # see deploys/mirror_client.py


@dataclass
class NodeContext:
    me: Host
    stack: Stack
    profile: SystemProfile | None
    state: HostStateData
    extras: dict
    pkgs: PackageSet
    modules: str  # "open" | "proprietary"
    reboot_reasons: list[str] = field(default_factory=list)
    driver_changing: bool = False  # the driver packages change in this apply
    fabricmanager_changing: bool = False
    runtime_restart: bool = False  # the container runtime's config changed in this apply
    apt_lists_stale: bool = True  # the first apt transaction of the apply runs apt update
    # /etc/docker/daemon.json as this apply leaves it so far (None: absent): the mirror
    # client and the container deploy each merge into it, neither undoing the other.
    docker_daemon: str | None = None

    def __post_init__(self) -> None:
        self.docker_daemon = self.extras.get("docker_daemon")

    @property
    def os_key(self) -> str:
        return self.pkgs.os_id

    @property
    def apt(self) -> bool:
        return self.pkgs.manager == "apt"

    @property
    def installed(self) -> dict[str, str]:
        return {n: p.version for n, p in self.state.packages.items() if p.installed}

    @property
    def held(self) -> list[str]:
        return sorted(self.state.held)

    @property
    def digests(self) -> dict[str, str | None]:
        return self.extras.get("digests", {})

    @property
    def nvswitch(self) -> bool:
        return bool(self.profile and self.profile.nvswitch)

    def install(
        self,
        label: str,
        packages: Mapping[str, str | None],
        hold: bool = True,
        remove: list[str] | None = None,
    ) -> None:
        """One apt (or dnf) transaction against the state read at the start; only the
        first transaction of the apply refreshes the package lists."""
        from gpuprov.operations.apt import apt_pinned_install
        from gpuprov.operations.dnf import dnf_pinned_install

        installed = self.installed
        if not self.apt:
            dnf_pinned_install(name=label, packages=packages, installed=installed)
            return
        changes = any(
            n not in installed or (v is not None and installed[n] != v) for n, v in packages.items()
        ) or any(n in installed for n in remove or ())
        apt_pinned_install(
            name=label,
            packages=packages,
            hold=hold,
            remove=remove,
            installed=installed,
            held=self.held,
            update=self.apt_lists_stale,
        )
        if changes:
            self.apt_lists_stale = False

    def service(self, name: str) -> ServiceState:
        return self.state.services.get(name) or ServiceState(None, None)

    def var(self, key: str, default=None):
        return host.data.get(key, self.me.vars.get(key, default))


def node_context() -> NodeContext:
    """The current host's state (read once per apply) and its packages."""
    me: Host | None = host.data.get(HOST_DATA_KEY)
    if me is None or me.stack is None:
        from gpuprov.engine.refusal import HostRefused

        raise HostRefused(
            f"{host.name} has no GPU stack in the inventory", "give it a group with a stack"
        )
    facts = read_node_facts()  # shared with preflight: one round trip per host
    state, extras = facts.state, facts.extras
    if state.os is None:
        from gpuprov.engine.refusal import HostRefused

        raise HostRefused("cannot tell the host's OS (no /etc/os-release)")
    ignored = me.vars.get("gpuprov_preflight_ignore") or ()
    if me.stack.os and me.stack.os != state.os.os_key and "stack_os" not in ignored:
        # preflight refuses this first, with its other findings; this guards callers
        # that run the stack alone. Ignored, the host's own OS picks the packages.
        from gpuprov.engine.refusal import HostRefused

        raise HostRefused(
            f"the inventory says stack.os {me.stack.os}, the host runs {state.os.os_key}",
            f"fix stack.os for {me.name} (package names differ per OS), or reinstall it",
            code="stack_os",
        )
    profile = get_profile(me.profile) if me.profile else None
    modules = resolve_modules(me.stack, profile)
    pin = me.stack.driver
    pkgs = packages_for(state.os.os_key, pin.branch, pin.version, modules)
    return NodeContext(me, me.stack, profile, state, extras, pkgs, modules)


def warn(text: str) -> None:
    """A warning the plan/apply output shows once for this host."""
    try:
        from gpuprov.engine.refusal import warn as engine_warn
    except ImportError:  # the engine is not installed with this build: log it
        import logging

        logging.getLogger("gpuprov.deploys").warning("%s: %s", host.name, text)
        return
    engine_warn(text)
