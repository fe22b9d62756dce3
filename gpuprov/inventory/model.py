"""The resolved cluster model every other module reads.

The loader (loader.py) validates the YAML and builds these objects with every per-host
value already resolved (cluster defaults < group values < host overrides), so consumers
never merge anything themselves. Each object keeps the `Location` it came from so later
checks (static checks, planner) can name the inventory line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gpuprov.errors import Location, Problem

if TYPE_CHECKING:  # the bundle section's reader is imported only for inventories with one
    from gpuprov.inventory.bundle import BundleSpec

ModuleFlavour = Literal["auto", "open", "proprietary"]
ContainerRuntime = Literal["docker", "podman", "containerd", "none"]
HostRole = Literal["gpu", "mirror", "controller"]


@dataclass(frozen=True)
class DriverPin:
    branch: str  # "580"
    version: str  # "580.95.05"
    modules: ModuleFlavour = "auto"
    location: Location = Location("<default>")


@dataclass(frozen=True)
class Stack:
    """What a GPU host should run. Resolved per host (overrides applied)."""

    driver: DriverPin
    cuda: tuple[str, ...] = ()  # toolkit versions "12.8", "13.0"; installed side by side
    cuda_default: str | None = None  # /usr/local/cuda target; defaults to the last of `cuda`
    container_runtime: ContainerRuntime = "containerd"
    dcgm: bool = True
    location: Location = Location("<default>")
    # Target OS id ("debian12", "ubuntu2404", "rhel9"; gpuprov/data/packages.yaml); None =
    # not declared, so package names cannot be checked before facts are gathered.
    os: str | None = None
    cuda_location: Location = Location("<default>")  # where `cuda:` was set, for checks


@dataclass(frozen=True)
class MirrorRef:
    """The site's offline mirror host and the ports of its three services."""

    host: str  # a host name from the inventory (role: mirror)
    apt_port: int = 8080
    registry_port: int = 5000
    models_port: int = 8090
    scheme: str = "http"
    # The site's bundle public keyring (binary, on the control node): GPU hosts trust the
    # mirror's apt repositories through it (Signed-By) and `gpuprov verify` checks them by it.
    keyring: Path | None = None
    # The upstream RPM signing keys (Red Hat's, NVIDIA's; armored or binary, on the control
    # node): RHEL hosts check each package's own signature by them (gpgcheck=1). A copy of
    # a verified bundle's rpm/<os-id>/keys/upstream.asc (docs/bundles.md).
    rpm_keys: Path | None = None
    # Host.domains keys, nearest first: a GPU host uses the mirror host sharing the first of
    # these with it (same rack, else same row...), else the first mirror (docs/inventory.md).
    nearest: tuple[str, ...] = ("rack", "row", "room", "site")
    location: Location = Location("<default>")


@dataclass(frozen=True)
class SSHSettings:
    user: str = "root"
    port: int = 22
    key: Path | None = None
    # Strict host-key checking against this file (kept beside the inventory).
    known_hosts: Path = Path("known_hosts")
    sudo: bool = False  # connect as `user` and use sudo for privileged commands
    # The sudo password is never in the file: only this environment variable or a prompt.
    sudo_password_env: str = "GPUPROV_SUDO_PASSWORD"
    connect_timeout: int = 10


@dataclass(frozen=True)
class CommandGate:
    """A site health gate: a shell command run on the host (as the deploy user) after its
    deploys; exit 0 passes. `{host}` and `{address}` are substituted, shell-quoted."""

    command: str
    timeout: int = 300  # seconds
    location: Location = Location("<default>")

    @property
    def name(self) -> str:
        return f"command: {self.command}"


@dataclass(frozen=True)
class RolloutPolicy:
    canary: int | str = 1  # a count or "N%"
    waves: tuple[str, ...] = ("100%",)  # cumulative "10%", "50%", "100%" or counts
    max_fail: str = "0"  # per wave: a count or "N%"
    failure_domain: str = "rack"  # the Host.domains key that bounds a wave
    max_per_domain: int | None = None
    # nvidia-smi | dcgm-diag | container, or a CommandGate ({command: "..."} in the file)
    gates: tuple[str | CommandGate, ...] = ("nvidia-smi",)
    drain: str | None = None  # command template, {host} / {address} substituted
    undrain: str | None = None
    hook_host: str | None = None  # run drain/undrain there (an inventory host); None = local
    pause_between_waves: bool = False
    location: Location = Location("<default>")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    role: HostRole
    group: str
    ssh: SSHSettings
    stack: Stack | None  # None for non-GPU hosts (mirror, controller)
    profile: str | None  # GPU system profile name (gpuprov/data/profiles.yaml)
    # Failure domains: {"rack": "r01", "nvlink_domain": "nvl1", ...}
    domains: dict[str, str] = field(default_factory=dict)
    # Free-form per-host data passed to deploys (e.g. simulated GPU profile in the lab).
    vars: dict[str, Any] = field(default_factory=dict)  # free-form YAML values
    location: Location = Location("<default>")

    @property
    def rack(self) -> str | None:
        return self.domains.get("rack")


@dataclass(frozen=True)
class Group:
    name: str
    role: HostRole
    profile: str | None
    hosts: tuple[str, ...]
    location: Location = Location("<default>")


@dataclass
class Cluster:
    name: str
    path: Path  # the inventory file
    stack: Stack
    mirror: MirrorRef | None
    ssh: SSHSettings
    rollout: RolloutPolicy
    groups: dict[str, Group]
    hosts: dict[str, Host]  # in file order
    # Non-fatal findings of the loader (e.g. Ansible vars gpuprov ignores).
    warnings: list[Problem] = field(default_factory=list)
    # More names for sets of hosts, for --limit (aliases.py; an Ansible inventory's groups).
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # What an air-gapped bundle is built from (`cluster.bundle:`; gpuprov bundle build).
    bundle: BundleSpec | None = None

    def gpu_hosts(self) -> list[Host]:
        return [h for h in self.hosts.values() if h.role == "gpu"]

    def mirror_host(self) -> Host | None:
        return self.hosts.get(self.mirror.host) if self.mirror else None

    def select(self, limit: list[str] | None) -> list[Host]:
        """Hosts named by --limit (host, group or alias names, fnmatch globs); all when None."""
        from fnmatch import fnmatch

        if not limit:
            return list(self.hosts.values())
        aliased = {
            h for name, members in self.aliases.items() if any(fnmatch(name, p) for p in limit)
            for h in members
        }  # fmt: skip
        chosen = []
        for host in self.hosts.values():
            if host.name in aliased or any(
                fnmatch(host.name, pat) or fnmatch(host.group, pat) for pat in limit
            ):
                chosen.append(host)
        return chosen

    @property
    def known_hosts_path(self) -> Path:
        kh = self.ssh.known_hosts
        return kh if kh.is_absolute() else self.path.parent / kh
