"""LAB: a Vagrant lab of one mirror host and N simulated GPU hosts (see docs/lab.md).

`box` builds the local Debian 12 box from the test bed's cached rootfs (no download beyond
Debian's mirror), `vagrant` drives the top-level Vagrantfile and turns `vagrant ssh-config`
into an inventory with recorded host keys, `snapshot` proves a dry run changes nothing,
`demo` is `make demo`. Nothing here is used to provision real clusters.
"""

from __future__ import annotations

import os
from pathlib import Path

LOCAL_BOX = "gpuprov/debian12-local"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def lab_dir() -> Path:
    """GPUPROV_LAB_DIR, else <repo>/lab (git-ignored): box files, keys, known_hosts, logs."""
    env = os.environ.get("GPUPROV_LAB_DIR")
    path = Path(env) if env else repo_root() / "lab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def vagrant_home() -> Path:
    """Where Vagrant keeps its boxes (VAGRANT_HOME, else ~/.vagrant.d)."""
    return Path(os.environ.get("VAGRANT_HOME", Path.home() / ".vagrant.d"))
