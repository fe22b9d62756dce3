"""Ansible YAML inventories (`all: {vars, hosts, children}`) in our format.

`to_native` rewrites the Ansible tree into our schema, copying every node's line/column
(so validation errors still point into the Ansible file) and its comments (so
`gpuprov inventory import` keeps them). Variable mapping (docs/inventory.md):

  ansible_host -> address            ansible_port -> ssh.port / host port
  ansible_user -> ssh.user           ansible_ssh_private_key_file -> ssh.key
  ansible_become -> ssh.sudo         gpuprov_known_hosts -> ssh.known_hosts
  gpuprov_role / gpuprov_profile / gpuprov_rack / gpuprov_domains
  gpuprov_driver_branch / _version / _modules, gpuprov_cuda, gpuprov_cuda_default,
  gpuprov_container_runtime, gpuprov_dcgm, gpuprov_os -> stack
  all.vars only: gpuprov_cluster_name, gpuprov_mirror, gpuprov_rollout
Other ansible_* variables are ignored (a warning); other variables go to `vars`.
Nested groups are flattened: a host belongs to the innermost group listing it first;
parent group vars apply to child groups.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ruamel.yaml.comments import CommentedMap

from gpuprov.inventory.reader import Reader, suggest, type_name

# variable -> path in our schema (relative to the cluster, group or host mapping)
VAR_MAP: dict[str, tuple[str, ...]] = {
    "ansible_user": ("ssh", "user"),
    "ansible_port": ("ssh", "port"),
    "ansible_ssh_private_key_file": ("ssh", "key"),
    "ansible_become": ("ssh", "sudo"),
    "gpuprov_known_hosts": ("ssh", "known_hosts"),
    "gpuprov_role": ("role",),
    "gpuprov_profile": ("profile",),
    "gpuprov_rack": ("rack",),
    "gpuprov_domains": ("domains",),
    "gpuprov_driver_branch": ("stack", "driver", "branch"),
    "gpuprov_driver_version": ("stack", "driver", "version"),
    "gpuprov_driver_modules": ("stack", "driver", "modules"),
    "gpuprov_cuda": ("stack", "cuda"),
    "gpuprov_cuda_default": ("stack", "cuda_default"),
    "gpuprov_container_runtime": ("stack", "container_runtime"),
    "gpuprov_dcgm": ("stack", "dcgm"),
    "gpuprov_os": ("stack", "os"),
}
CLUSTER_ONLY = {
    "gpuprov_cluster_name": ("name",),
    "gpuprov_mirror": ("mirror",),
    "gpuprov_rollout": ("rollout",),
}
SECRETS = ("ansible_password", "ansible_ssh_pass", "ansible_become_password", "ansible_become_pass")
GROUP_ONLY = ("role",)
HOST_ONLY = ("rack", "domains")


def _copy_pos(dst: CommentedMap, key: Any, src: Any, srckey: Any) -> None:
    with contextlib.suppress(Exception):
        dst.lc.add_kv_line_col(key, list(src.lc.data[srckey]))
    try:
        if srckey in src.ca.items:
            dst.ca.items[key] = src.ca.items[srckey]
    except Exception:
        pass


def _new_map(src: Any, srckey: Any = None) -> CommentedMap:
    m = CommentedMap()
    try:
        if srckey is not None:
            m.lc.line, m.lc.col = src.lc.data[srckey][0], src.lc.data[srckey][1]
        else:
            m.lc.line, m.lc.col = src.lc.line, src.lc.col
    except Exception:
        pass
    return m


def _place(r: Reader, dst: CommentedMap, vars_node: Any, where: str, level: str) -> None:
    """Move the variables of one Ansible `vars` mapping (or host entry) into `dst`."""
    if vars_node is None:
        return
    if not isinstance(vars_node, CommentedMap):
        r.error(r.node_loc(vars_node) if hasattr(vars_node, "lc") else r.loc(),
                f"{where}: expected a mapping, got {type_name(vars_node)}")  # fmt: skip
        return
    for key, value in vars_node.items():
        kloc = r.key_loc(vars_node, key)
        if key in SECRETS:
            r.error(kloc, f"{where}.{key}: secrets never go in the inventory; set ssh.sudo_password_env "
                    "to an environment variable name (default GPUPROV_SUDO_PASSWORD)")  # fmt: skip
            continue
        if key == "ansible_host":
            if level != "host":
                r.error(kloc, f"{where}.ansible_host: only a host can have an address")
                continue
            path: tuple[str, ...] = ("address",)
        elif key == "ansible_port" and level == "host":
            path = ("port",)
        elif key in VAR_MAP:
            path = VAR_MAP[key]
        elif key in CLUSTER_ONLY:
            if level != "cluster":
                r.error(kloc, f"{where}.{key}: only allowed in all.vars")
                continue
            path = CLUSTER_ONLY[key]
        elif isinstance(key, str) and key.startswith("gpuprov_"):
            r.error(
                kloc, f"{where}: unknown variable {key!r}{suggest(key, [*VAR_MAP, *CLUSTER_ONLY])}"
            )
            continue
        elif isinstance(key, str) and key.startswith("ansible_"):
            r.warn(kloc, f"{where}.{key}: ignored by gpuprov")
            continue
        else:
            if level == "cluster":
                r.warn(kloc, f"all.vars.{key}: gpuprov has no cluster-wide vars; ignored")
                continue
            path = ("vars", str(key))
        if level == "cluster" and path[0] == "profile":
            continue  # a default for every group: see to_native
        if level == "cluster" and path[0] in (*GROUP_ONLY, *HOST_ONLY):
            r.error(kloc, f"{where}.{key}: not allowed in all.vars (set it on a group or host)")
            continue
        node = dst
        for part in path[:-1]:
            if part not in node or not isinstance(node[part], CommentedMap):
                node[part] = _new_map(vars_node, key)
                _copy_pos(node, part, vars_node, key)
            node = node[part]
        if path == ("mirror",) and isinstance(value, str):
            m = _new_map(vars_node, key)
            m["host"] = value
            _copy_pos(m, "host", vars_node, key)
            value = m
        node[path[-1]] = value
        _copy_pos(node, path[-1], vars_node, key)


def _merge_into(dst: CommentedMap, src: CommentedMap) -> None:
    for key, value in src.items():
        if isinstance(value, CommentedMap) and isinstance(dst.get(key), CommentedMap):
            _merge_into(dst[key], value)
        else:
            dst[key] = value
            _copy_pos(dst, key, src, key)


def to_native(root: CommentedMap, r: Reader, default_name: str = "cluster") -> CommentedMap:
    """Our-format tree for an Ansible inventory tree; problems go to `r`."""
    out = _new_map(root)
    out.ca.comment = root.ca.comment
    cluster = _new_map(root, "all")
    out["cluster"] = cluster
    _copy_pos(out, "cluster", root, "all")
    for key in root:
        if key != "all":
            r.error(
                r.key_loc(root, key),
                f"unknown top-level key {key!r} in an Ansible inventory (only `all:`)",
            )
    top = root["all"]
    if top is None:
        top = CommentedMap()
    if not isinstance(top, CommentedMap):
        r.error(r.value_loc(root, "all"), f"all: expected a mapping, got {type_name(top)}")
        return out
    for key in top:
        if key not in ("vars", "hosts", "children"):
            r.error(
                r.key_loc(top, key),
                f"unknown key {key!r} in all{suggest(key, ['vars', 'hosts', 'children'])}",
            )
    cluster["name"] = default_name
    _place(r, cluster, top.get("vars"), "all.vars", "cluster")
    # all.vars.gpuprov_profile: the profile of every group that sets none.
    base = CommentedMap()
    top_vars = top.get("vars")
    if isinstance(top_vars, CommentedMap) and "gpuprov_profile" in top_vars:
        base["profile"] = top_vars["gpuprov_profile"]
        _copy_pos(base, "profile", top_vars, "gpuprov_profile")
    groups = _new_map(top)
    out["groups"] = groups
    seen: set[str] = set()
    _group(r, groups, "ungrouped", top, "all", base, seen)
    children = top.get("children")
    if children is not None and not isinstance(children, CommentedMap):
        r.error(
            r.value_loc(top, "children"),
            f"all.children: expected a mapping, got {type_name(children)}",
        )
    elif children:
        for name, node in children.items():
            _walk(r, groups, name, node, children, f"all.children.{name}", base, seen)
    return out


def _walk(r, groups, name, node, parent, where, inherited: CommentedMap, seen) -> None:
    if node is None:
        node = CommentedMap()
    if not isinstance(node, CommentedMap):
        r.error(r.value_loc(parent, name), f"{where}: expected a mapping, got {type_name(node)}")
        return
    for key in node:
        if key not in ("vars", "hosts", "children"):
            r.error(
                r.key_loc(node, key),
                f"unknown key {key!r} in {where}{suggest(key, ['vars', 'hosts', 'children'])}",
            )
    own = CommentedMap()
    _merge_into(own, inherited)
    _place(r, own, node.get("vars"), f"{where}.vars", "group")
    _group(r, groups, str(name), node, where, own, seen, parent, name)
    children = node.get("children")
    if children is not None and not isinstance(children, CommentedMap):
        r.error(
            r.value_loc(node, "children"),
            f"{where}.children: expected a mapping, got {type_name(children)}",
        )
    elif children:
        for cname, cnode in children.items():
            _walk(r, groups, cname, cnode, children, f"{where}.children.{cname}", own, seen)


def _group(r, groups, name, node, where, gvars: CommentedMap, seen, parent=None, pkey=None) -> None:
    hosts = node.get("hosts")
    if hosts is None:
        return
    if not isinstance(hosts, CommentedMap):
        r.error(
            r.value_loc(node, "hosts"), f"{where}.hosts: expected a mapping, got {type_name(hosts)}"
        )
        return
    group = _new_map(parent, pkey) if parent is not None else _new_map(node, "hosts")
    _merge_into(group, gvars)
    # rack/domains set on an Ansible group (a "rack" group) apply to each of its hosts.
    host_defaults = {k: group.pop(k) for k in HOST_ONLY if k in group}
    members = _new_map(node, "hosts")
    for hname, hnode in hosts.items():
        if str(hname) in seen:
            continue  # already in an earlier group: gpuprov groups are disjoint
        seen.add(str(hname))
        host = _new_map(hosts, hname)
        _place(r, host, hnode, f"{where}.hosts.{hname}", "host")
        for k, v in host_defaults.items():
            if k not in host:
                host[k] = v
                _copy_pos(host, k, gvars, k)
        members[hname] = host
        _copy_pos(members, hname, hosts, hname)
    if not members:
        return
    group["hosts"] = members
    _copy_pos(group, "hosts", node, "hosts")
    if name in groups:
        r.error(
            r.key_loc(parent, pkey) if parent is not None else r.loc(),
            f"group {name!r} defined twice",
        )
        return
    groups[name] = group
    if parent is not None:
        _copy_pos(groups, name, parent, pkey)


def problem_at(r: Reader, message: str):
    from gpuprov.errors import Problem

    return Problem(r.loc(), message)
