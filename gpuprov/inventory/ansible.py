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

from gpuprov.inventory import deepops, ranges
from gpuprov.inventory.aliases import ANSIBLE_KEY
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
    for key, raw in vars_node.items():
        kloc = r.key_loc(vars_node, key)
        # DeepOps' driver/CUDA variables become gpuprov_* ones, or a warning naming them
        tr = deepops.translate(key, raw)
        for note in tr.warnings if tr is not None else ():
            _warn_once(r, kloc, key, f"{where}.{key}: {note}")
        for name, value in tr.vars if tr is not None else [(key, raw)]:
            _place_one(r, dst, vars_node, key, name, value, kloc, where, level)


def _place_one(r, dst, vars_node, src_key, key, value, kloc, where, level) -> None:
    """Put variable `key` into `dst`; it was read as `src_key` of `vars_node`, which holds
    its position (the two differ for DeepOps variables)."""
    if key in SECRETS:
        r.error(kloc, f"{where}.{key}: secrets never go in the inventory; set ssh.sudo_password_env "
                "to an environment variable name (default GPUPROV_SUDO_PASSWORD)")  # fmt: skip
        return
    if key == "ansible_host":
        if level != "host":
            r.error(kloc, f"{where}.ansible_host: only a host can have an address")
            return
        path: tuple[str, ...] = ("address",)
    elif key == "ansible_port" and level == "host":
        path = ("port",)
    elif key in VAR_MAP:
        path = VAR_MAP[key]
    elif key in CLUSTER_ONLY:
        if level != "cluster":
            r.error(kloc, f"{where}.{key}: only allowed in all.vars")
            return
        path = CLUSTER_ONLY[key]
    elif isinstance(key, str) and key.startswith("gpuprov_"):
        r.error(kloc, f"{where}: unknown variable {key!r}{suggest(key, [*VAR_MAP, *CLUSTER_ONLY])}")
        return
    elif isinstance(key, str) and key.startswith("ansible_"):
        _warn_once(r, kloc, key, f"{where}.{key}: ignored by gpuprov")
        return
    else:
        if level == "cluster":
            r.warn(kloc, f"all.vars.{key}: gpuprov has no cluster-wide vars; ignored")
            return
        path = ("vars", str(key))
    if level == "cluster" and path[0] == "profile":
        return  # a default for every group: see to_native
    if level == "cluster" and path[0] in (*GROUP_ONLY, *HOST_ONLY):
        r.error(kloc, f"{where}.{key}: not allowed in all.vars (set it on a group or host)")
        return
    node = dst
    for part in path[:-1]:
        if part not in node or not isinstance(node[part], CommentedMap):
            node[part] = _new_map(vars_node, src_key)
            _copy_pos(node, part, vars_node, src_key)
        node = node[part]
    if path == ("mirror",) and isinstance(value, str):
        m = _new_map(vars_node, src_key)
        m["host"] = value
        _copy_pos(m, "host", vars_node, src_key)
        value = m
    node[path[-1]] = value
    _copy_pos(node, path[-1], vars_node, src_key)


def _warn_once(r: Reader, loc: Any, key: Any, message: str) -> None:
    """One warning per variable definition: a group variable an INI inventory hands to each
    of 1,000 hosts (ini.py) is still one line of the file, so one warning."""
    seen: set = r.__dict__.setdefault("_ansible_warned", set())
    if (loc, key) not in seen:
        seen.add((loc, key))
        r.warn(loc, message)


def _merge_into(dst: CommentedMap, src: CommentedMap) -> None:
    for key, value in src.items():
        if isinstance(value, CommentedMap) and isinstance(dst.get(key), CommentedMap):
            _merge_into(dst[key], value)
        elif isinstance(value, CommentedMap):
            # a copy: a child group's vars must not write into its parent's (and so into
            # its siblings'), which sharing the node did
            copy = _new_map(src, key)
            _merge_into(copy, value)
            dst[key] = copy
            _copy_pos(dst, key, src, key)
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
        if key not in ("all", ANSIBLE_KEY):
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
    aliases = _aliases(root, top, groups)
    if aliases:
        out["aliases"] = aliases
    return out


def _aliases(root: CommentedMap, top: CommentedMap, groups: CommentedMap) -> CommentedMap:
    """Every Ansible group as an alias of all its hosts (children included), so `--limit`
    keeps Ansible's group names; none where it says no more than the gpuprov group."""
    members: dict[str, list[str]] = {}
    given = root.get(ANSIBLE_KEY)  # from ini.py, which has flattened the groups already
    if isinstance(given, dict):
        members = {str(k): [str(h) for h in v] for k, v in given.items()}
    else:
        _collect(top.get("children"), members)
    out = CommentedMap()
    for name, hosts in members.items():
        hosts = list(dict.fromkeys(hosts))
        group = groups.get(name)
        mine = list(group.get("hosts") or ()) if isinstance(group, CommentedMap) else None
        if hosts and hosts != mine:
            out[name] = hosts
    return out


def _collect(children: Any, members: dict[str, list[str]]) -> list[str]:
    """The hosts under each group of a YAML `children` mapping, recursively."""
    found: list[str] = []
    if not isinstance(children, CommentedMap):
        return found
    for name, node in children.items():
        mine: list[str] = []
        if isinstance(node, CommentedMap):
            hosts = node.get("hosts")
            if isinstance(hosts, CommentedMap):
                for pattern in hosts:
                    try:
                        mine += ranges.expand(str(pattern))
                    except ranges.RangeError:
                        continue  # reported where the hosts are read
            mine += _collect(node.get("children"), members)
        members.setdefault(str(name), []).extend(mine)
        found += mine
    return found


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
    for pattern, hnode in hosts.items():
        names = [pattern]
        if isinstance(pattern, str) and ranges.has_range(pattern):
            try:  # `dgx[01:16]:` as Ansible's YAML inventory reads it
                names = ranges.expand(pattern)
            except ranges.RangeError as exc:
                r.error(r.key_loc(hosts, pattern), str(exc))
                continue
        for hname in names:
            if str(hname) in seen:
                continue  # already in an earlier group: gpuprov groups are disjoint
            seen.add(str(hname))
            host = _new_map(hosts, pattern)
            _place(r, host, hnode, f"{where}.hosts.{hname}", "host")
            for k, v in host_defaults.items():
                if k not in host:
                    host[k] = v
                    _copy_pos(host, k, gvars, k)
            members[hname] = host
            _copy_pos(members, hname, hosts, pattern)
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
