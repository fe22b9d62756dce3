"""TEST SUPPORT: a site of two light hosts, `mirror01` (role mirror) and `gpu01`, and its
inventory with every host key recorded (strict host-key checking, as `gpuprov hosts
trust` would). Root only: a test module that asks for one is skipped otherwise."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from ruamel.yaml import YAML

if TYPE_CHECKING:
    from gpuprov.testbed.lighthosts import LightHostLab

NAMES = ["mirror01", "gpu01"]


@contextmanager
def mirror_site(prefix: str) -> Iterator[LightHostLab]:
    """The two light hosts, up for the `with` block. `prefix` names the lab's network
    namespaces: one per test module, so modules never share hosts."""
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(len(NAMES), prefix=prefix, names=NAMES) as lab:
        yield lab


def mirror_site_inventory(
    lab: LightHostLab, path: Path, group_vars: dict[str, dict[str, Any]] | None = None
) -> Path:
    """Write the lab's inventory at `path` (mirror host in the `mirror` group, GPU host in
    `gpu`, each group's `vars:` replaced by its entry in `group_vars`), known_hosts beside it."""
    from gpuprov.engine import known_hosts
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.testbed.inventory import write_lab_inventory

    write_lab_inventory(
        path,
        hosts=[(h.name, h.address) for h in lab.hosts],
        key=lab.key_path,
        known_hosts=path.parent / "known_hosts",
        mirror=True,
    )
    if group_vars:
        yaml = YAML()
        doc = yaml.load(path.read_text())
        for group, values in group_vars.items():
            doc["groups"][group]["vars"] = values
        with path.open("w") as fh:
            yaml.dump(doc, fh)
    cluster = load_inventory(path)
    hosts = list(cluster.hosts.values())
    known_hosts.record(cluster.known_hosts_path, known_hosts.scan(hosts, cluster.known_hosts_path))
    return path
