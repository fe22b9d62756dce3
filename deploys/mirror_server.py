"""The site mirror host (`role: mirror`): apt, container registry and model registry,
served from the bundle the last `gpuprov bundle import` made current (docs/mirror-host.md).

Runbook (the mirror host has no internet; everything comes from the imported bundle):
0. Read the host in the one NodeFacts round trip (its `mirror` section: the `current`
   bundle, its OS repositories and wheels, the venv, user, packages, units, registry
   storages). Refuse the host, before any change, when no bundle was imported or the
   bundle lacks this host's OS or Python.
1. A system user `gpuprov-mirror` with no login shell runs the three services.
2. The host's own apt source: the bundle's repository for its OS (`file:`, Signed-By the
   bundle's key). Debian's nginx.service and docker-registry.service are masked first
   (their defaults listen on every interface, the registry writable), then nginx,
   docker-registry and python3-venv are installed from that source alone.
3. gpuprov in /opt/gpuprov/venv-<digest> from the bundle's wheels (pip, offline, every
   hash required); /opt/gpuprov/venv points at it.
4. The registry's storage for this bundle: /srv/gpuprov/registry/<id>, hard links to the
   bundle's OCI blobs (gpuprov.mirror.registry_storage), written once per bundle.
5. Configurations and units: nginx (its own instance, `gpuprov-apt.service`: the bundle's
   apt/<os-id>/ at /<os-id>/, its rpm/<os-id>/ at /rpm/<os-id>/), docker-
   registry (`gpuprov-registry.service`, read-only storage: pull-only), `gpuprov mirror
   serve` (`gpuprov-models.service`). They name the bundle's directory itself (symlinks
   resolved), so a new import changes them and the services restart onto it; nothing
   restarts when neither their unit, configuration, nor the bundle changed.
6. Every unit enabled, running, `Restart=on-failure`, journald, the file system
   read-only for it (`ProtectSystem=strict`), the content read-only, own user.

A converged mirror host plans no change and sends one command (the NodeFacts read).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import shlex
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import deploy, operation

from gpuprov.errors import InputError, Location, Problem
from gpuprov.facts.mirror_state import MirrorStateData
from gpuprov.facts.scratch_root import is_scratch_root
from gpuprov.inventory.model import Host, MirrorRef
from gpuprov.operations.files import managed_file
from gpuprov.operations.service import service_running
from gpuprov.paths import (
    MIRROR_APT_UNIT,
    MIRROR_BUNDLE_ROOT,
    MIRROR_MODELS_UNIT,
    MIRROR_NGINX_CONF,
    MIRROR_OWN_SOURCE,
    MIRROR_PACKAGES,
    MIRROR_REGISTRY_CONF,
    MIRROR_REGISTRY_ROOT,
    MIRROR_REGISTRY_UNIT,
    MIRROR_SERVING,
    MIRROR_USER,
    MIRROR_VENV_ROOT,
    PACKAGED_UNITS,
)
from gpuprov.rendering import render

HOST_DATA_KEY = "gpuprov_host"  # gpuprov.engine.connect.HOST_DATA_KEY: the inventory Host
MIRROR_REF_KEY = "gpuprov_mirror_ref"  # gpuprov.engine.connect: the inventory's MirrorRef
SERVICE_USER = MIRROR_USER
UNIT_DIR = "/etc/systemd/system"
APT_RUNTIME = "/run/gpuprov-apt"  # the apt unit's RuntimeDirectory
# Python modules the services import: imported once at install, which proves the wheels
# complete and leaves the .pyc files the read-only services cannot write.
SERVICE_IMPORTS = (
    "import gpuprov.cli, gpuprov.cli.app, gpuprov.cli.mirror.serve, gpuprov.mirror.server, "
    "gpuprov.mirror.registry_storage"
)
PIP_TIMEOUT_S = 1800

# Written into ExecStart and configuration files unquoted: nothing systemd, nginx or a
# shell could read differently.
HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
ABS_PATH_RE = re.compile(r"/[A-Za-z0-9._/-]{1,4095}")


@dataclass(frozen=True)
class ModelsSecurity:
    """Optional bearer tokens and TLS for the model mirror (TLS for the registry too):
    paths on the mirror host, put there by the site (the token file owned by
    gpuprov-mirror, mode 0600; the server refuses it otherwise). From the mirror host's
    vars `gpuprov_mirror_token_file`, `gpuprov_mirror_tls_cert`, `gpuprov_mirror_tls_key`,
    `gpuprov_mirror_public_url`."""

    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    public_url: str | None = None  # https://name:port when the certificate names a host

    @classmethod
    def from_vars(cls, vars: dict) -> ModelsSecurity:
        def get(name: str) -> str | None:
            value = vars.get(f"gpuprov_mirror_{name}")
            return None if value is None else str(value)

        return cls(get("token_file"), get("tls_cert"), get("tls_key"), get("public_url"))

    def problems(self) -> list[str]:
        from gpuprov.mirror.server import PUBLIC_URL_RE

        out = [
            f"{name}: {value!r} is not an absolute path of letters, digits, . _ - /"
            for name, value in (
                ("token_file", self.token_file),
                ("tls_cert", self.tls_cert),
                ("tls_key", self.tls_key),
            )
            if value is not None and not ABS_PATH_RE.fullmatch(value)
        ]
        if bool(self.tls_cert) != bool(self.tls_key):
            out.append("tls_cert and tls_key: give both or neither")
        if self.public_url is not None and not PUBLIC_URL_RE.fullmatch(self.public_url):
            out.append(f"public_url: {self.public_url!r} is not http(s)://HOST[:PORT][/PATH]")
        return out


def bind_address(address: str) -> str:
    """The address the services listen on: the mirror host's inventory address, an IP
    literal or a host name. Wildcards are refused: they would expose the services on every
    interface of the host."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if ip is not None and ip.is_unspecified:
        raise InputError(
            [
                Problem(
                    Location("mirror"),
                    f"address {address!r} listens on every interface: give the mirror "
                    "host's site address in the inventory",
                )
            ]
        )
    if ip is None and not HOSTNAME_RE.fullmatch(address):
        raise InputError(
            [Problem(Location("mirror"), f"address {address!r}: expected an IP or a host name")]
        )
    return address


def listen(address: str, port: int) -> str:
    """ADDR:PORT as nginx and the registry read it (an IPv6 literal in brackets)."""
    bind = bind_address(address)
    return f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"


@dataclass(frozen=True)
class BundlePaths:
    """Where one imported bundle's content is on the mirror host (symlinks resolved)."""

    bundle_id: str  # 64 hex (mirror_state.CURRENT_RE matched it)
    root: str = MIRROR_BUNDLE_ROOT

    @property
    def dir(self) -> str:
        return f"{self.root}/bundles/{self.bundle_id}"

    @property
    def apt(self) -> str:
        return f"{self.dir}/apt"

    @property
    def oci(self) -> str:
        return f"{self.dir}/oci"

    @property
    def models(self) -> str:
        return f"{self.dir}/models"

    @property
    def wheels(self) -> str:
        return f"{self.dir}/wheels"

    @property
    def key(self) -> str:
        return f"{self.dir}/keys/bundle.asc"

    @property
    def registry(self) -> str:
        return f"{MIRROR_REGISTRY_ROOT}/{self.bundle_id}"


# ---- rendered files (pure: tested on their own) ----------------------------------------


def nginx_conf(mirror: MirrorRef, bundle: BundlePaths, bind: str) -> str:
    return render(
        "gpuprov-apt-nginx.conf.j2",
        listen=listen(bind, mirror.apt_port),
        root=bundle.apt,
        bundle=bundle.dir,
        runtime=APT_RUNTIME,
    )


def apt_unit(mirror: MirrorRef) -> str:
    return render(
        "gpuprov-apt.service.j2",
        config=MIRROR_NGINX_CONF,
        content=MIRROR_BUNDLE_ROOT,
        port=mirror.apt_port,
        user=SERVICE_USER,
    )


def registry_conf(
    mirror: MirrorRef, bundle: BundlePaths, bind: str, security: ModelsSecurity
) -> str:
    return render(
        "gpuprov-registry.yml.j2",
        addr=listen(bind, mirror.registry_port),
        rootdirectory=bundle.registry,
        tls_cert=security.tls_cert,
        tls_key=security.tls_key,
    )


def registry_unit(mirror: MirrorRef) -> str:
    return render(
        "gpuprov-registry.service.j2",
        config=MIRROR_REGISTRY_CONF,
        content=MIRROR_BUNDLE_ROOT,
        port=mirror.registry_port,
        user=SERVICE_USER,
    )


def models_unit(
    mirror: MirrorRef,
    store: str,
    bind: str,
    security: ModelsSecurity = ModelsSecurity(),  # noqa: B008 - frozen, immutable
) -> str:
    problems = security.problems()
    if problems:
        raise InputError([Problem(Location("mirror"), p) for p in problems])
    return render(
        "gpuprov-models.service.j2",
        gpuprov_bin=f"{MIRROR_VENV_ROOT}/venv/bin/gpuprov",
        store=store,
        content=MIRROR_BUNDLE_ROOT,
        host=bind_address(bind),
        port=mirror.models_port,
        user=SERVICE_USER,
        group=SERVICE_USER,
        token_file=security.token_file,
        tls_cert=security.tls_cert,
        tls_key=security.tls_key,
        public_url=security.public_url,
    )


def own_source(bundle: BundlePaths, os_id: str) -> str:
    return render("gpuprov-bundle.sources.j2", uri=f"file:{bundle.apt}/{os_id}", keyring=bundle.key)


# ---- operations ----------------------------------------------------------------------


@operation()
def run_when(needed: bool, commands: list[str], already: str):
    """
    Run `commands` (each one shell command) only when `needed`, else a no-op saying
    `already` (the deploy decided from the facts it read).

    + needed: whether the host lacks what the commands make
    + commands: shell commands, every value quoted by the caller
    + already: what the no-op says
    """
    if not needed:
        host.noop(already)
        return
    yield from commands


def _apt_only_bundle() -> str:
    """apt options that read the bundle's source alone (the mirror host has no other
    reachable source; another one would only time out)."""
    return (
        f"-o Dir::Etc::SourceList={shlex.quote(MIRROR_OWN_SOURCE)} "
        "-o Dir::Etc::SourceParts=/nonexistent -o APT::Get::List-Cleanup=0"
    )


def _venv_commands(bundle: BundlePaths, python: str, pip_wheel: str, name: str) -> list[str]:
    target = shlex.quote(f"{MIRROR_VENV_ROOT}/{name}")
    wheels = shlex.quote(bundle.wheels)
    reqs = shlex.quote(f"{bundle.wheels}/requirements-{python}.txt")
    root = shlex.quote(MIRROR_VENV_ROOT)
    link_tmp = shlex.quote(f"{MIRROR_VENV_ROOT}/venv.new")
    return [
        f"mkdir -p {root} && rm -rf {target} && python3 -m venv --without-pip {target}",
        # pip runs from its wheel (a zip pip supports): no python3-pip or python3-venv.
        # --no-compile: byte-compiling every module is minutes on a slow host; the import
        # below compiles exactly what the services load.
        f"timeout {PIP_TIMEOUT_S} {target}/bin/python {wheels}/{shlex.quote(pip_wheel)}/pip install -q --no-index --find-links {wheels} "
        f"--require-hashes --no-deps --no-compile --no-cache-dir --disable-pip-version-check "
        f"--root-user-action=ignore -r {reqs}",
        f"{target}/bin/python -I -c {shlex.quote(SERVICE_IMPORTS)}",
        f"ln -sfn {name} {link_tmp} && mv -Tf {link_tmp} {shlex.quote(f'{MIRROR_VENV_ROOT}/venv')}",
        f"find {root} -mindepth 1 -maxdepth 1 -name 'venv-*' ! -name {shlex.quote(name)} "
        "-exec rm -rf {} +",
    ]


def _refuse(reason: str, fix: str) -> None:
    from gpuprov.engine.refusal import HostRefused

    raise HostRefused(reason, fix)  # no code: not a preflight check one may ignore


def check_bundle(me: Host, ms: MirrorStateData, os_id: str) -> BundlePaths:
    """The imported bundle this host serves, or a refusal saying what to do."""
    if ms.current is None:
        what = (
            f"points at {ms.current_raw!r}, not an imported bundle"
            if ms.current_raw
            else "does not exist"
        )
        _refuse(
            f"no bundle imported on the mirror host: {MIRROR_BUNDLE_ROOT}/current {what}",
            "run `gpuprov bundle import MEDIA INVENTORY --keyring KEYRING` (docs/bundles.md), "
            "then apply again",
        )
    bundle = BundlePaths(str(ms.current))
    if os_id not in ms.apt_os:
        _refuse(
            f"bundle {bundle.bundle_id[:12]} has no apt repository for this host's OS "
            f"{os_id} (it has: {', '.join(ms.apt_os) or 'none'})",
            f"build the bundle with {os_id} among its targets (cluster.bundle in the inventory)",
        )
    if ms.python is None or ms.wheels is None or ms.pip_wheel is None:
        _refuse(
            f"bundle {bundle.bundle_id[:12]} has no wheels for this host's Python "
            f"{ms.python or '(python3 not found)'}"
            + ("" if ms.pip_wheel else " (or no pip wheel)"),
            "build the bundle with that Python in cluster.bundle.python",
        )
    return bundle


def _unit_restart(
    ms: MirrorStateData, unit: str, changed: bool, *, name: str | None = None
) -> None:
    active, enabled = ms.units.get(unit.removesuffix(".service"), ("-", "-"))
    service_running(
        name=name or f"{unit}: enabled and running",
        unit=unit.removesuffix(".service"),
        restart=changed,
        active_now=active,
        enabled_now=enabled,
    )


@deploy("Mirror host")
def mirror_server(security: ModelsSecurity | None = None, bind: str | None = None) -> None:
    """Converge a `role: mirror` host (no-op on any other). `bind` defaults to its
    inventory address; `security` to its host vars (ModelsSecurity.from_vars)."""
    from gpuprov.facts.node_facts import read_node_facts

    me: Host | None = host.data.get(HOST_DATA_KEY)
    if me is None or me.role != "mirror":
        return
    if is_scratch_root(host):
        return  # preflight's identity file is all such a host gets, as for the GPU stack
    mirror: MirrorRef = host.data.get(MIRROR_REF_KEY) or MirrorRef(host=me.name)
    security = security or ModelsSecurity.from_vars(me.vars)
    address = bind or me.address
    facts = read_node_facts()
    ms = facts.mirror
    if ms is None:
        _refuse(
            "the mirror host's state was not read (a scratch root?)",
            "apply the mirror role to a real host",
        )
    assert ms is not None
    os_id = facts.state.os.os_key if facts.state.os else "unknown"
    bundle = check_bundle(me, ms, os_id)
    assert ms.python is not None and ms.wheels is not None and ms.pip_wheel is not None
    digests = facts.extras.get("digests", {})
    # Every file rendered before any change: bad input refuses the host untouched.
    files = {
        MIRROR_OWN_SOURCE: own_source(bundle, os_id),
        MIRROR_NGINX_CONF: nginx_conf(mirror, bundle, address),
        MIRROR_REGISTRY_CONF: registry_conf(mirror, bundle, address, security),
        f"{UNIT_DIR}/{MIRROR_APT_UNIT}": apt_unit(mirror),
        f"{UNIT_DIR}/{MIRROR_REGISTRY_UNIT}": registry_unit(mirror),
        f"{UNIT_DIR}/{MIRROR_MODELS_UNIT}": models_unit(mirror, bundle.models, address, security),
        # The bundle the services run on: changes with every import, restarts them all.
        MIRROR_SERVING: bundle.bundle_id + "\n",
    }

    user = shlex.quote(SERVICE_USER)
    run_when(
        name=f"System user {SERVICE_USER} (no login shell)",
        needed=not ms.user,
        commands=[
            f"getent group {user} >/dev/null || groupadd --system {user}",
            f"useradd --system --gid {user} --shell /usr/sbin/nologin --home-dir /nonexistent "
            f"--no-create-home {user}",
        ],
        already=f"{SERVICE_USER} exists",
    )

    source = managed_file(
        name=f"apt source: bundle {bundle.bundle_id[:12]} ({os_id}, Signed-By its key)",
        path=MIRROR_OWN_SOURCE,
        content=files[MIRROR_OWN_SOURCE],
        digests=digests,
    )
    packaged = [
        u
        for u in PACKAGED_UNITS
        if ms.units.get(u.removesuffix(".service"), ("", ""))[1] != "masked"
    ]
    run_when(
        name="Debian's nginx.service and docker-registry.service masked (never started)",
        needed=bool(packaged),
        commands=[f"systemctl mask --now {' '.join(map(shlex.quote, packaged))}"],
        already="masked",
    )
    missing = [p for p in MIRROR_PACKAGES if ms.packages.get(p) != "installed"]
    apt_opts = _apt_only_bundle()
    run_when(
        name=f"Packages from the bundle: {', '.join(MIRROR_PACKAGES)}",
        needed=bool(missing) or source.will_change,
        commands=[
            f"apt-get update -q {apt_opts}",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
            f"{apt_opts} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
            + " ".join(map(shlex.quote, MIRROR_PACKAGES)),
        ],
        already="installed",
    )

    venv_name = f"venv-{ms.wheels[:16]}"
    venv = run_when(
        name=f"gpuprov from the bundle's wheels (Python {ms.python}) in {MIRROR_VENV_ROOT}/{venv_name}",
        needed=ms.venv != venv_name,
        commands=_venv_commands(bundle, ms.python, ms.pip_wheel, venv_name),
        already=f"{MIRROR_VENV_ROOT}/venv is {venv_name}",
    )
    registry_root = shlex.quote(MIRROR_REGISTRY_ROOT)
    run_when(
        name=f"Registry storage of bundle {bundle.bundle_id[:12]} (hard links to its OCI blobs)",
        needed=bundle.bundle_id not in ms.registries,
        commands=[
            f"mkdir -p {registry_root} && chmod 755 {registry_root}",
            f"rm -rf {shlex.quote(bundle.registry)} && "
            f"{MIRROR_VENV_ROOT}/venv/bin/python -I -m gpuprov.mirror.registry_storage "
            f"{shlex.quote(bundle.oci)} {shlex.quote(bundle.registry)}",
        ],
        already="written",
    )

    written = {
        path: managed_file(
            name=f"{posixpath.basename(path)}",
            path=path,
            content=text,
            digests=digests,
        )
        for path, text in files.items()
        if path != MIRROR_OWN_SOURCE
    }
    units_changed = any(
        written[f"{UNIT_DIR}/{u}"].will_change
        for u in (MIRROR_APT_UNIT, MIRROR_REGISTRY_UNIT, MIRROR_MODELS_UNIT)
    )
    run_when(
        name="systemd daemon-reload",
        needed=units_changed,
        commands=["systemctl daemon-reload"],
        already="units unchanged",
    )
    serving = written[MIRROR_SERVING].will_change
    _unit_restart(
        ms,
        MIRROR_APT_UNIT,
        serving
        or written[MIRROR_NGINX_CONF].will_change
        or written[f"{UNIT_DIR}/{MIRROR_APT_UNIT}"].will_change,
    )
    _unit_restart(
        ms,
        MIRROR_REGISTRY_UNIT,
        serving
        or written[MIRROR_REGISTRY_CONF].will_change
        or written[f"{UNIT_DIR}/{MIRROR_REGISTRY_UNIT}"].will_change,
    )
    # The model server runs gpuprov's code: a new venv restarts it too.
    _unit_restart(
        ms,
        MIRROR_MODELS_UNIT,
        serving or venv.will_change or written[f"{UNIT_DIR}/{MIRROR_MODELS_UNIT}"].will_change,
    )
