"""`aliases:`: more names for sets of hosts, for `--limit`.

gpuprov groups are disjoint (one group a host, for its role, profile and stack); Ansible
groups are not (`slurm-node`, `k8s-cluster`, `gpu-servers` over the same hosts). An Ansible
inventory's groups become aliases, so `--limit slurm-node` keeps working after the move:

    aliases:
      slurm-node: [gpu01, gpu02, dgx03]

An alias may share a group's name (then `--limit NAME` selects both); every member must be
a host of the inventory.
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml.comments import CommentedMap

from gpuprov.inventory.reader import Reader, type_name

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ANSIBLE_KEY = "__gpuprov_aliases__"  # how ini.py hands Ansible's groups to to_native


def read_aliases(
    r: Reader, root: CommentedMap, hosts: dict[str, Any]
) -> dict[str, tuple[str, ...]]:
    node = r.mapping(root, "aliases", "inventory")
    if node is None:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for name, members in node.items():
        loc = r.key_loc(node, name)
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            r.error(loc, f"alias name {name!r}: use letters, digits, '.', '_' or '-'")
            continue
        if not isinstance(members, list):
            r.error(r.value_loc(node, name), f"aliases.{name}: expected a list of host names, "
                    f"got {type_name(members)}")  # fmt: skip
            continue
        names = []
        for i, member in enumerate(members):
            if str(member) not in hosts:
                r.error(r.value_loc(members, i), f"aliases.{name}: {member!r} is not a host of "
                        "this inventory")  # fmt: skip
                continue
            names.append(str(member))
        out[name] = tuple(names)
    return out
