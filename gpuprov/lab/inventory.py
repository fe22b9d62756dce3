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

REPO_SUITE = "gpuprov-lab"  # the stand-in NVIDIA repository's suite (connected side)
MIRROR_OCTET = 10  # mirror01 is NET.10
# The mirror host's services (the inventory's `mirror:` defaults, docs/mirror-host.md):
# nginx serves the imported bundle's apt/ tree, docker-registry its OCI images, `gpuprov
# mirror serve` its model store. Bundles publish each OS's repository with suite `gpuprov`.
APT_PORT, REGISTRY_PORT, MODELS_PORT = 8080, 5000, 8090
BUNDLE_SUITE = "gpuprov"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

# The stack the stand-in packages provide (gpuprov/testbed/standins/catalog.json). The lab
# starts on the catalog's oldest driver release, so there is a next one to upgrade to
# (gpuprov.lab.upgrade); its CUDA toolkit runs on every later driver too.
STACK = """\
  stack:
    os: {os}
    driver: {{branch: "{branch}", version: "{version}", modules: auto}}
    cuda: ["{cuda}"]
    container_runtime: containerd
    dcgm: true
"""


def first_driver() -> str:
    """The driver version a lab is first provisioned with: the catalog's oldest release."""
    from gpuprov.testbed.standins.catalog import driver_releases

    return driver_releases()[0]


def stack_text(os_name: str, driver: str) -> str:
    from gpuprov.testbed.standins.catalog import branch_of, catalog

    releases = catalog()["driver_releases"]
    if driver not in [r["version"] for r in releases]:
        raise ValueError(f"driver {driver!r} is not a stand-in release")
    return STACK.format(
        os=os_name, branch=branch_of(driver), version=driver, cuda=releases[0]["cuda_version"]
    )


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())


def mirror_address(settings: LabSettings) -> str:
    return f"{settings.net}.{MIRROR_OCTET}"


def keyring_path(settings: LabSettings) -> Path:
    """The lab's bundle public keyring (gpuprov.lab.airgap.bundle_key writes it)."""
    return settings.dir / "bundle.gpg"


def mirror_client(settings: LabSettings, os_name: str) -> str:
    """The GPU hosts' only sources: mirror01's apt repository (the imported bundle's, signed
    by the lab's bundle key), its registry and its model registry."""
    keyring = keyring_path(settings).resolve()
    # The deploys read the keyring on the control node relative to the working directory:
    # relative to the repository root (where `make demo` runs) when it lies under it.
    if keyring.is_relative_to(repo_root()):
        keyring = keyring.relative_to(repo_root())
    mirror = mirror_address(settings)
    return (
        f'gpuprov_mirror_client: {{apt_url: "http://{mirror}:{APT_PORT}/{os_name}", '
        f'suite: {BUNDLE_SUITE}, keyring: {keyring}, registry: "{mirror}:{REGISTRY_PORT}", '
        f'registry_scheme: http, hf_endpoint: "http://{mirror}:{MODELS_PORT}"}}'
    )


def bundle_section(settings: LabSettings, inventory: Path, os_name: str) -> list[str]:
    """`cluster.bundle` of the connected side's copy of the lab inventory: Debian's archive
    (this machine's mirror) and the stand-in NVIDIA repository and registry served on
    loopback while the build runs (gpuprov.lab.airgap.upstreams); the closure is resolved
    against the lab hosts' real installed set. Only in the copy: its files exist only once
    `make demo` made them, and the far side needs none of it."""
    from gpuprov.lab.airgap import IMAGE, MODEL_REPO, upstream_ports
    from gpuprov.testbed.rootfs import debian_mirror

    base = inventory.parent
    apt_port, reg_port = upstream_ports(settings)
    debian = debian_mirror().rstrip("/")
    lab = settings.dir
    return [
        "  bundle:",
        "    targets:",
        f"      {os_name}:",
        "        sources:",
        f'          - {{url: "{debian}", suites: [bookworm, bookworm-updates], '
        f"components: [main], keyring: {DEBIAN_KEYRING}}}",
        f'          - {{url: "{debian}-security", suites: [bookworm-security], '
        f"components: [main], keyring: {DEBIAN_KEYRING}}}",
        f'          - {{url: "http://127.0.0.1:{apt_port}", suites: [{REPO_SUITE}], '
        f"components: [main], keyring: {_rel(lab / 'repo-keyring.gpg', base)}}}",
        f"        base: {{dpkg_status: {_rel(lab / 'dpkg-status', base)}}}",
        f'    images: ["127.0.0.1:{reg_port}/{IMAGE}"]',
        f'    insecure_registries: ["127.0.0.1:{reg_port}"]',
        "    models:",
        f"      - {{repo: {MODEL_REPO}, source: {_rel(lab / 'model', base)}, revision: main}}",
        '    python: ["3.11"]',
    ]


def render(
    hosts: list[LabHost],
    settings: LabSettings,
    inventory: Path,
    known_hosts: Path,
    *,
    bundle: bool = False,
    driver: str | None = None,
) -> str:
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
        stack_text(os_name, driver or first_driver()).rstrip("\n"),
    ]
    if bundle:
        out += bundle_section(settings, inventory, os_name)
    if mirrors:
        # The lab's bundle keyring (always the same path: the checked-in default lab's file
        # is byte for byte what the demo writes): `gpuprov verify` judges the mirror's apt
        # repository by it. The loader wants the file: write_inventory makes it first.
        key = _rel(keyring_path(settings), base)
        out.append(f"  mirror: {{host: {mirrors[0].name}, keyring: {key}}}")
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
    # The stand-in driver builds nothing, and the box's kernel is the test bed's, not the
    # archive's current one: preflight's headers check only warns here.
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
            f"      {mirror_client(settings, os_name)}",
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
    settings: LabSettings,
    inventory: Path,
    known_hosts: Path | None = None,
    driver: str | None = None,
    states: dict[str, str] | None = None,
) -> tuple[Path, list[LabHost]]:
    """Probe the running VMs, record their host keys, write and validate the inventory
    (the lab's bundle key is made first when there is none: the inventory names it).
    `states`: the VMs' states as the caller just read them (`discover`)."""
    from gpuprov.lab.airgap import bundle_key

    known_hosts = known_hosts or settings.dir / "known_hosts"
    hosts = discover(settings, states)
    record_host_keys(hosts, known_hosts)
    if not keyring_path(settings).is_file():
        bundle_key(settings.dir)
    text = render(hosts, settings, inventory, known_hosts, driver=driver)
    _replace_validated(inventory, text)
    return inventory, hosts


def _replace_validated(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, once the real loader accepted it (a located
    InputError otherwise, and nothing replaced)."""
    from gpuprov.inventory.loader import load_inventory

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        load_inventory(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def planned_hosts(settings: LabSettings) -> list[LabHost]:
    """The lab's hosts as the Vagrantfile defines them, before any VM exists (addresses
    and key paths are fixed; host keys are not known yet): enough for a bundle build,
    which reads the hosts' stacks, never the hosts."""
    dot = settings.dotfile_dir / "machines"
    return [
        LabHost(name, "", 22, "vagrant", dot / name / "libvirt" / "private_key",
                f"{settings.net}.{MIRROR_OCTET + i}", "",
                None if name.startswith("mirror") else settings.profile)
        for i, name in enumerate(settings.machine_names())
    ]  # fmt: skip


def write_bundle_inventory(
    settings: LabSettings, driver: str | None = None, path: Path | None = None
) -> Path:
    """The connected side's copy of the lab inventory, with its `bundle:` section, at
    <lab>/bundle-inventory.yaml (validated by the real loader before it replaces anything)."""
    path = path or settings.dir / "bundle-inventory.yaml"
    text = render(planned_hosts(settings), settings, path, settings.dir / "known_hosts",
                  bundle=True, driver=driver)  # fmt: skip
    _replace_validated(path, text)
    return path
