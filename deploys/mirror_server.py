"""The site mirror host: model registry and signed apt repository as systemd units.

Runbook (the mirror host has no internet; everything comes from the control node):
1. A system user `gpuprov-mirror` with no login shell runs the services.
2. gpuprov itself: the wheelhouse (gpuprov's wheel, the server's dependency wheels built
   for the host's Python, pip) is copied to /opt/gpuprov/wheels and installed offline
   into /opt/gpuprov/venv-<digest>; /opt/gpuprov/venv points at the current one.
3. The content directories (/srv/gpuprov/models, /srv/gpuprov/apt) are root's: the
   services can read them and nothing else can write them (`deploys/mirror_content.py`
   fills them).
4. `gpuprov-models.service`: `gpuprov mirror serve` on the inventory's `models_port`,
   listening on the mirror host's inventory address only (never 0.0.0.0: a second
   interface, a management or public network, must not reach it). Bearer tokens and TLS
   are given by `ModelsSecurity` (docs/security.md).
5. `gpuprov-apt.service`: the apt repositories as static files on `apt_port` (the same
   address), served by `gpuprov.mirror.aptserve` (the standard library's http.server with
   an idle timeout and connection caps) on the OS's python3 (nginx would have to come from
   this very repository; apt verifies every byte against the signed InRelease, so the
   server only has to be available, not trusted).
6. Both units: enabled, running, `Restart=on-failure`, logs to journald, the whole file
   system read-only for them (`ProtectSystem=strict`, `ReadOnlyPaths=` the content).
   Restarted only when their unit or the installed venv changed.

TODO(registry): the container registry (Debian's `docker-registry`, on `registry_port`)
needs its package in the site's apt repository first: a bundle carries it; this deploy
does not install it yet (docs/model-mirror.md, "On the mirror host").
"""

from __future__ import annotations

import io
import ipaddress
import re
from dataclasses import dataclass

from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from gpuprov.errors import InputError, Location, Problem
from gpuprov.inventory.model import MirrorRef
from gpuprov.mirror.wheelhouse import Wheelhouse
from gpuprov.operations.tree import tree_sync, venv_from_wheels
from gpuprov.rendering import render

HOST_DATA_KEY = "gpuprov_host"  # gpuprov.engine.connect.HOST_DATA_KEY: the inventory Host
SERVICE_USER = "gpuprov-mirror"
MODELS_UNIT = "gpuprov-models.service"
APT_UNIT = "gpuprov-apt.service"
UNIT_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class MirrorHostPaths:
    root: str = "/opt/gpuprov"  # wheels/, venv-<digest>/, venv -> venv-<digest>
    store: str = "/srv/gpuprov/models"  # the model store (gpuprov/mirror/store.py layout)
    apt: str = "/srv/gpuprov/apt"  # signed apt repositories, one folder per suite

    @property
    def wheels(self) -> str:
        return f"{self.root}/wheels"

    @property
    def gpuprov_bin(self) -> str:
        return f"{self.root}/venv/bin/gpuprov"

    @property
    def python(self) -> str:
        return f"{self.root}/venv/bin/python"


DEFAULT_PATHS = MirrorHostPaths()

# Written into ExecStart unquoted, so nothing systemd or a shell could read differently.
HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
ABS_PATH_RE = re.compile(r"/[A-Za-z0-9._/-]{1,4095}")


@dataclass(frozen=True)
class ModelsSecurity:
    """Optional bearer tokens and TLS for the model mirror: paths on the mirror host, put
    there by the site (the token file owned by gpuprov-mirror, mode 0600; the server
    refuses it otherwise)."""

    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    public_url: str | None = None  # https://name:port when the certificate names a host

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


def models_unit(
    mirror: MirrorRef,
    paths: MirrorHostPaths,
    bind: str,
    security: ModelsSecurity = ModelsSecurity(),  # noqa: B008 - frozen, immutable
) -> str:
    problems = security.problems()
    if problems:
        raise InputError([Problem(Location("mirror"), p) for p in problems])
    return render(
        "gpuprov-models.service.j2",
        gpuprov_bin=paths.gpuprov_bin,
        store=paths.store,
        host=bind_address(bind),
        port=mirror.models_port,
        user=SERVICE_USER,
        group=SERVICE_USER,
        token_file=security.token_file,
        tls_cert=security.tls_cert,
        tls_key=security.tls_key,
        public_url=security.public_url,
    )


def apt_unit(mirror: MirrorRef, paths: MirrorHostPaths, bind: str) -> str:
    return render(
        "gpuprov-apt.service.j2",
        python=paths.python,
        root=paths.apt,
        host=bind_address(bind),
        port=mirror.apt_port,
        user=SERVICE_USER,
    )


def _unit_file(name: str, text: str):
    return files.put(
        name=f"Unit file {name}",
        src=io.StringIO(text),
        dest=f"{UNIT_DIR}/{name}",
        user="root",
        group="root",
        mode="644",
    )


def _inventory_address() -> str:
    from pyinfra import host

    me = host.data.get(HOST_DATA_KEY)
    if me is None:
        raise InputError(
            [Problem(Location("mirror"), f"{host.name}: no inventory host data to bind to")]
        )
    return me.address


@deploy("Mirror server")
def mirror_server(
    mirror: MirrorRef,
    wheelhouse: Wheelhouse,
    paths: MirrorHostPaths = DEFAULT_PATHS,
    security: ModelsSecurity = ModelsSecurity(),  # noqa: B008 - frozen, immutable
    bind: str | None = None,
) -> None:
    """`bind` defaults to the mirror host's inventory address."""
    wheelhouse.gpuprov_wheel  # noqa: B018 - refuse a wheelhouse without gpuprov, before any change
    address = bind or _inventory_address()
    models_text = models_unit(mirror, paths, address, security)  # refuse bad input first
    apt_text = apt_unit(mirror, paths, address)
    server.group(name=f"System group {SERVICE_USER}", group=SERVICE_USER, system=True)
    server.user(
        name=f"System user {SERVICE_USER} (no login shell)",
        user=SERVICE_USER,
        group=SERVICE_USER,
        system=True,
        shell="/usr/sbin/nologin",
        home="/nonexistent",
        ensure_home=False,
    )

    files.directory(
        name=f"{paths.root} (root's)", path=paths.root, user="root", group="root", mode="755"
    )
    tree_sync(name="gpuprov wheelhouse", src=wheelhouse.path, dest=paths.wheels)
    venv = venv_from_wheels(
        name="gpuprov installed offline from the wheelhouse",
        root=paths.root,
        wheels=paths.wheels,
        digest=wheelhouse.digest,
        pip_wheel=wheelhouse.pip_wheel.name,
    )

    # An empty store is valid (`repos/` present); content arrives with mirror_content.
    for path in (paths.store, f"{paths.store}/repos", f"{paths.store}/blobs", paths.apt):
        files.directory(
            name=f"{path} (root's, readable by the services)",
            path=path,
            user="root",
            group="root",
            mode="755",
        )

    units = {
        MODELS_UNIT: _unit_file(MODELS_UNIT, models_text),
        APT_UNIT: _unit_file(APT_UNIT, apt_text),
    }
    reload = any(op.will_change for op in units.values())
    for name, unit in units.items():
        systemd.service(
            name=f"{name}: enabled and running",
            service=name,
            running=True,
            enabled=True,
            daemon_reload=reload,
            # Both run code from the venv (the apt unit its static server).
            restarted=unit.will_change or venv.will_change,
        )
