"""The site mirror host: model registry and signed apt repository as systemd units.

Runbook (the mirror host has no internet; everything comes from the control node):
1. A system user `gpuprov-mirror` with no login shell runs the services.
2. gpuprov itself: the wheelhouse (gpuprov's wheel, the server's dependency wheels built
   for the host's Python, pip) is copied to /opt/gpuprov/wheels and installed offline
   into /opt/gpuprov/venv-<digest>; /opt/gpuprov/venv points at the current one.
3. The content directories (/srv/gpuprov/models, /srv/gpuprov/apt) are root's: the
   services can read them and nothing else can write them (`deploys/mirror_content.py`
   fills them).
4. `gpuprov-models.service`: `gpuprov mirror serve` on the inventory's `models_port`.
5. `gpuprov-apt.service`: the apt repositories as static files on `apt_port`, served by
   the OS's `python3 -m http.server` (nginx would have to come from this very repository;
   apt verifies every byte against the signed InRelease, so the server only has to be
   available, not trusted).
6. Both units: enabled, running, `Restart=on-failure`, logs to journald, the whole file
   system read-only for them (`ProtectSystem=strict`, `ReadOnlyPaths=` the content).
   Restarted only when their unit or the installed venv changed.

TODO(registry): the container registry (Debian's `docker-registry`, on `registry_port`)
needs its package in the site's apt repository first: a bundle carries it; this deploy
does not install it yet (docs/model-mirror.md, "On the mirror host").
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from gpuprov.inventory.model import MirrorRef
from gpuprov.mirror.wheelhouse import Wheelhouse
from gpuprov.operations.tree import tree_sync, venv_from_wheels
from gpuprov.rendering import render

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


DEFAULT_PATHS = MirrorHostPaths()


def models_unit(mirror: MirrorRef, paths: MirrorHostPaths) -> str:
    return render(
        "gpuprov-models.service.j2",
        gpuprov_bin=paths.gpuprov_bin,
        store=paths.store,
        host="0.0.0.0",
        port=mirror.models_port,
        user=SERVICE_USER,
        group=SERVICE_USER,
        token_file=None,
        tls_cert=None,
        tls_key=None,
        public_url=None,
    )


def apt_unit(mirror: MirrorRef, paths: MirrorHostPaths) -> str:
    return render("gpuprov-apt.service.j2", root=paths.apt, port=mirror.apt_port, user=SERVICE_USER)


def _unit_file(name: str, text: str):
    return files.put(
        name=f"Unit file {name}",
        src=io.StringIO(text),
        dest=f"{UNIT_DIR}/{name}",
        user="root",
        group="root",
        mode="644",
    )


@deploy("Mirror server")
def mirror_server(
    mirror: MirrorRef, wheelhouse: Wheelhouse, paths: MirrorHostPaths = DEFAULT_PATHS
) -> None:
    wheelhouse.gpuprov_wheel  # noqa: B018 - refuse a wheelhouse without gpuprov, before any change
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
        MODELS_UNIT: _unit_file(MODELS_UNIT, models_unit(mirror, paths)),
        APT_UNIT: _unit_file(APT_UNIT, apt_unit(mirror, paths)),
    }
    reload = any(op.will_change for op in units.values())
    for name, unit in units.items():
        systemd.service(
            name=f"{name}: enabled and running",
            service=name,
            running=True,
            enabled=True,
            daemon_reload=reload,
            restarted=unit.will_change or (name == MODELS_UNIT and venv.will_change),
        )
