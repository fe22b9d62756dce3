"""LAB: the inventory of a running Vagrant lab (`gpuprov lab inventory`).

Addresses are the VMs' private-network addresses (stable: NET.10, NET.11, ...), so the
file checked in as inventories/vagrant.yaml stays right for the default lab; keys are
the per-VM keys Vagrant made; host keys go to a known_hosts beside the lab files, recorded
right after `vagrant up` (strict checking applies from then on). Written atomically and
loaded back with the real loader before it replaces anything.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gpuprov.lab import repo_root
from gpuprov.lab.vagrant import LabHost, LabSettings, discover, record_host_keys

REPO_PORT = 8080  # the lab repository on the control node's lab-network address
REPO_SUITE = "gpuprov-lab"

# The stack the stand-in packages provide (gpuprov/testbed/standins/catalog.json).
STACK = """\
  stack:
    os: {os}
    driver: {{branch: "580", version: "580.95.05", modules: auto}}
    cuda: ["12.8", "13.0"]
    container_runtime: containerd
    dcgm: true
"""


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())


def mirror_client(settings: LabSettings) -> str:
    """The GPU hosts' apt source: the lab repository `make demo` serves at NET.1:8080."""
    keyring = (settings.dir / "repo-keyring.gpg").resolve()
    # The deploys read the keyring on the control node relative to the working directory:
    # relative to the repository root (where `make demo` runs) when it lies under it.
    if keyring.is_relative_to(repo_root()):
        keyring = keyring.relative_to(repo_root())
    return (
        f'gpuprov_mirror_client: {{apt_url: "http://{settings.net}.1:{REPO_PORT}", '
        f"suite: {REPO_SUITE}, keyring: {keyring}}}"
    )


def render(hosts: list[LabHost], settings: LabSettings, inventory: Path, known_hosts: Path) -> str:
    base = inventory.parent
    os_name = "debian12" if "debian12" in settings.box else "ubuntu2204"
    gpus = sorted((h for h in hosts if h.role == "gpu"), key=lambda h: h.name)
    mirrors = sorted((h for h in hosts if h.role == "mirror"), key=lambda h: h.name)
    profile = next((h.sim_profile for h in gpus if h.sim_profile), settings.profile)
    out = [
        "# The Vagrant lab (../Vagrantfile): generated from `vagrant ssh-config` by",
        "# `gpuprov lab inventory` (`make demo` regenerates it, with the host keys in",
        f"# {_rel(known_hosts, base)}). Box {settings.box}, {len(gpus)} GPU host(s) simulating "
        f"{profile}.",
        "cluster:",
        "  name: vagrant-lab",
        STACK.format(os=os_name).rstrip("\n"),
    ]
    if mirrors:
        out.append(f"  mirror: {{host: {mirrors[0].name}}}")
    out += [
        "  ssh:",
        f"    user: {hosts[0].user}",
        "    sudo: true",
        f"    known_hosts: {_rel(known_hosts, base)}",
        "    connect_timeout: 30            # software-emulated VMs answer slowly",
        "  rollout:",
        "    canary: 1",
        '    waves: ["100%"]',
        '    max_fail: "0"',
        "    gates: [nvidia-smi]",
        "groups:",
    ]
    # The lab's repository has stand-in NVIDIA packages, not Debian's linux-headers: the
    # stand-in driver builds nothing, so preflight's headers check only warns here.
    ignore = "gpuprov_preflight_ignore: [headers]"
    if mirrors:
        out += ["  mirror:", "    role: mirror", f"    vars: {{{ignore}}}", "    hosts:"]
        out += [_host_line(h, base) for h in mirrors]
    if gpus:
        out += [
            "  gpu:",
            f"    profile: {profile}",
            "    vars:",
            f"      sim_profile: {profile}",
            f"      {ignore}",
            f"      {mirror_client(settings)}",
            "    hosts:",
        ]
        out += [_host_line(h, base, rack=f"r{i % 2 + 1}") for i, h in enumerate(gpus)]
    return "\n".join(out) + "\n"


def _host_line(h: LabHost, base: Path, rack: str | None = None) -> str:
    fields = [f"address: {h.lab_address}"]
    if rack:
        fields.append(f"rack: {rack}")
    fields.append(f"ssh: {{key: {_rel(h.key, base)}}}")
    return f"      {h.name}: {{{', '.join(fields)}}}"


def write_inventory(
    settings: LabSettings, inventory: Path, known_hosts: Path | None = None
) -> tuple[Path, list[LabHost]]:
    """Probe the running VMs, record their host keys, write and validate the inventory."""
    from gpuprov.inventory.loader import load_inventory

    known_hosts = known_hosts or settings.dir / "known_hosts"
    hosts = discover(settings)
    record_host_keys(hosts, known_hosts)
    inventory.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".inventory-", suffix=".yaml", dir=inventory.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(render(hosts, settings, inventory, known_hosts))
        load_inventory(Path(tmp))  # raises a located InputError: nothing replaced
        os.replace(tmp, inventory)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return inventory, hosts
