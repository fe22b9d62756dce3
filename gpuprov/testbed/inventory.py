"""TEST BED: write a gpuprov inventory YAML for a lab's hosts.

Kept small on purpose so it follows the inventory format (docs/inventory.md) as it moves.
The first host is the mirror when one is asked for; the others are GPU hosts, four per rack.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

DEFAULT_STACK: dict[str, Any] = {
    "driver": {"branch": "580", "version": "580.95.05", "modules": "auto"},
    "cuda": ["12.8"],
    "container_runtime": "none",
    "dcgm": False,
}


def write_lab_inventory(
    path: Path,
    *,
    hosts: Sequence[tuple[str, str]],
    key: Path,
    known_hosts: Path,
    mirror: bool = False,
    user: str = "root",
    name: str = "lab",
    profile: str = "hgx-h100-8",
    rack_size: int = 4,
    **stack: Any,
) -> Path:
    """`hosts` is [(name, address)]; `stack` overrides DEFAULT_STACK keys."""
    cluster: dict[str, Any] = {"name": name, "stack": {**DEFAULT_STACK, **stack}}
    groups: dict[str, Any] = {}
    gpu_hosts = list(hosts)
    if mirror:
        mirror_name, mirror_address = gpu_hosts.pop(0)
        cluster["mirror"] = {"host": mirror_name}
        groups["mirror"] = {"role": "mirror", "hosts": {mirror_name: {"address": mirror_address}}}
    cluster["ssh"] = {"user": user, "key": str(key), "known_hosts": str(known_hosts)}
    groups["gpu"] = {
        "profile": profile,
        "hosts": {
            host: {"address": address, "rack": f"r{i // rack_size + 1:02d}"}
            for i, (host, address) in enumerate(gpu_hosts)
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        YAML().dump({"cluster": cluster, "groups": groups}, fh)
    tmp.replace(path)
    return path
