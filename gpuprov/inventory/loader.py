"""Load and validate an inventory file (our format or an Ansible YAML inventory) into the
resolved `Cluster` model. Every problem in the file is collected, each with FILE:LINE:COL,
and raised together as one `InputError`. Format: docs/inventory.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

from ruamel.yaml.comments import CommentedMap

from gpuprov.errors import InputError, Location, Problem
from gpuprov.inventory import layers
from gpuprov.inventory.aliases import read_aliases
from gpuprov.inventory.host_vars import check_vars
from gpuprov.inventory.hostranges import expand_groups
from gpuprov.inventory.model import (
    Cluster,
    DriverPin,
    Group,
    Host,
    HostRole,
    SSHSettings,
    Stack,
)
from gpuprov.inventory.policy import read_mirror, read_rollout
from gpuprov.inventory.reader import Missing, Reader
from gpuprov.inventory.source import is_ini, read_text
from gpuprov.safe_values import address_problem

ROOT_KEYS = ("cluster", "groups", "aliases")
CLUSTER_KEYS = ("name", "stack", "mirror", "ssh", "rollout", "bundle")
GROUP_KEYS = ("role", "profile", "stack", "ssh", "vars", "hosts")
HOST_KEYS = ("address", "port", "rack", "domains", "profile", "stack", "ssh", "vars")
ROLES = ("gpu", "mirror", "controller")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SECRET_VAR_RE = re.compile(r"(password|passwd|secret|token)", re.I)


def parse_yaml(path: Path, r: Reader) -> CommentedMap:
    """The file's round-trip YAML tree (every node knows its line/col) or InputError."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([Problem(Location(str(path)), "inventory file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem(Location(str(path)), f"cannot read inventory: {exc}")]) from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        root = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = r.loc(mark.line, mark.column) if mark else r.loc()
        what = " ".join(str(p).strip() for p in (exc.context, exc.problem) if p)
        if "duplicate key" in what and exc.context_mark is not None:
            m = re.search(r'found duplicate key "([^"]*)"', what)
            key = m.group(1) if m else "?"
            what = f"duplicate key {key!r} (first at line {exc.context_mark.line + 1})"
            raise InputError([Problem(where, what)]) from None
        raise InputError([Problem(where, f"YAML syntax error: {what}")]) from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise InputError(
            [
                Problem(
                    r.loc(),
                    f"YAML error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                )
            ]
        ) from None
    if root is None:
        raise InputError(
            [Problem(r.loc(), "inventory is empty; expected `cluster:` and `groups:`")]
        )
    if not isinstance(root, CommentedMap):
        raise InputError([Problem(r.node_loc(root) if hasattr(root, "lc") else r.loc(1, 0),
                                  "inventory must be a mapping with `cluster:` and `groups:`")])  # fmt: skip
    return root


def parse_any(path: Path, r: Reader) -> CommentedMap:
    """The tree of an inventory file: YAML, or an Ansible INI inventory (ini.py) read into
    the tree an Ansible YAML inventory gives."""
    if is_ini(path, read_text(path, r)):
        # The INI reader, the Ansible mapping and the bundle section's reader are imported
        # only for inventories that need them: a YAML inventory's `plan` does not pay for
        # them (docs/performance.md, tests/cli/test_startup_imports.py).
        from gpuprov.inventory.ini import read_ini

        return read_ini(path, r)
    return parse_yaml(path, r)


def load_inventory(path: Path | str) -> Cluster:
    """Load, validate and resolve `path`. Raises InputError with every problem found."""
    path = Path(path)
    r = Reader(path)
    root = parse_any(path, r)
    if "all" in root and "cluster" not in root and "groups" not in root:
        from gpuprov.inventory.ansible import to_native

        root = to_native(root, r, default_name=path.stem)
    cluster = build(root, path, r)
    r.raise_if_problems()
    assert cluster is not None
    return cluster


def build(root: CommentedMap, path: Path, r: Reader) -> Cluster | None:
    base = path.absolute().parent
    expand_groups(root, r)  # `gpu[001:128]:` -> one host each (hostranges.py)
    r.check_keys(root, ROOT_KEYS, "inventory")
    cnode = r.mapping(root, "cluster", "inventory", required=True) or CommentedMap()
    r.check_keys(cnode, CLUSTER_KEYS, "cluster")
    name = r.string(cnode, "name", "cluster")
    if name is Missing:
        name = path.stem
    stack_node = r.mapping(cnode, "stack", "cluster")
    cstack = layers.read_stack(r, stack_node, "cluster.stack") if stack_node is not None else {}
    if cstack:
        cstack["_loc"] = r.key_loc(cnode, "stack")
    ssh_node = r.mapping(cnode, "ssh", "cluster")
    cssh = layers.read_ssh(r, ssh_node, "cluster.ssh", base) if ssh_node is not None else {}
    rollout = read_rollout(r, r.mapping(cnode, "rollout", "cluster"))

    groups: dict[str, Group] = {}
    hosts: dict[str, Host] = {}
    first_addr: dict[str, tuple[str, Location]] = {}
    gnode = r.mapping(root, "groups", "inventory", required=True) or CommentedMap()
    mirror_name = _mirror_host_name(cnode)
    for gname, g in gnode.items():
        gloc = r.key_loc(gnode, gname)
        if not isinstance(gname, str) or not NAME_RE.fullmatch(gname):
            r.error(gloc, f"group name {gname!r}: use letters, digits, '.', '_' or '-'")
            continue
        if not isinstance(g, CommentedMap):
            r.error(r.value_loc(gnode, gname), f"groups.{gname}: expected a mapping, got {_tn(g)}")
            continue
        where = f"groups.{gname}"
        r.check_keys(g, GROUP_KEYS, where)
        role = r.string(g, "role", where, ROLES)
        explicit_role = role is not Missing
        role = role if explicit_role else "gpu"
        profile = _profile(r, g, where)
        gstack = _stack_layer(r, g, where)
        gssh = _ssh_layer(r, g, where, base)
        gvars = _vars(r, g, where)
        hnode = r.mapping(g, "hosts", where, required=True) or CommentedMap()
        members = []
        for hname, h in hnode.items():
            host = _host(r, hnode, hname, h, f"{where}.hosts", gname, role, explicit_role,
                         profile, gstack, gssh, gvars, cstack, cssh, base, mirror_name, "profile" in g)  # fmt: skip
            if host is None:
                continue
            if host.name in hosts:
                first = hosts[host.name].location
                r.error(host.location, f"duplicate host {host.name!r} (first defined at {first})")
                continue
            if host.address in first_addr:
                other, loc = first_addr[host.address]
                r.error(host.location if "address" not in h else r.value_loc(h, "address"),
                        f"duplicate address {host.address!r}: host {host.name!r} has the same "
                        f"address as {other!r} (at {loc})")  # fmt: skip
            else:
                first_addr[host.address] = (host.name, host.location)
            hosts[host.name] = host
            members.append(host.name)
        groups[gname] = Group(gname, cast(HostRole, role), profile, tuple(members), gloc)
    mirror = read_mirror(r, cnode, hosts, base)
    bundle = None
    if "bundle" in cnode:
        from gpuprov.inventory.bundle import read_bundle

        bundle = read_bundle(r, cnode, base)
    if rollout.hook_host is not None and rollout.hook_host not in hosts:
        r.error(r.value_loc(cnode["rollout"], "hook_host"),
                f"rollout.hook_host {rollout.hook_host!r} is not a host of this inventory")  # fmt: skip
    aliases = read_aliases(r, root, hosts)
    if r.problems:
        return None
    return Cluster(
        name=name,
        path=path,
        stack=_cluster_stack(r, cstack, hosts),
        mirror=mirror,
        ssh=layers.build_ssh(cssh, base),
        rollout=rollout,
        groups=groups,
        hosts=hosts,
        warnings=list(r.warnings),
        aliases=aliases,
        bundle=bundle,
    )


def _tn(v: Any) -> str:
    from gpuprov.inventory.reader import type_name

    return type_name(v)


def _mirror_host_name(cnode: CommentedMap) -> str | None:
    m = cnode.get("mirror")
    if isinstance(m, CommentedMap) and isinstance(m.get("host"), str):
        return m["host"]
    return None


def _profile(r: Reader, node: CommentedMap, where: str) -> str | None:
    from gpuprov.tables import profiles

    known = sorted(profiles())
    value = r.string(node, "profile", where)
    if value is Missing:
        return None
    if value not in known:
        from gpuprov.inventory.reader import suggest

        r.error(r.value_loc(node, "profile"),
                f"unknown profile {value!r}{suggest(value, known)} (known: {', '.join(known)})")  # fmt: skip
        return None
    return value


def _stack_layer(r: Reader, node: CommentedMap, where: str) -> layers.Layer:
    s = r.mapping(node, "stack", where)
    if s is None:
        return {}
    layer = layers.read_stack(r, s, f"{where}.stack")
    layer["_loc"] = r.key_loc(node, "stack")
    return layer


def _ssh_layer(r: Reader, node: CommentedMap, where: str, base: Path) -> layers.Layer:
    s = r.mapping(node, "ssh", where)
    return layers.read_ssh(r, s, f"{where}.ssh", base) if s is not None else {}


def _vars(r: Reader, node: CommentedMap, where: str) -> dict[str, object]:
    v = r.mapping(node, "vars", where)
    if v is None:
        return {}
    for key in v:
        if isinstance(key, str) and SECRET_VAR_RE.search(key):
            r.error(r.key_loc(v, key), f"{where}.vars.{key}: secrets never go in the inventory; "
                    "pass them through the environment")  # fmt: skip
    check_vars(r, v, where)
    return _plain(v)


def _plain(value: Any) -> Any:
    """Round-trip nodes -> plain dicts/lists/scalars for Host.vars."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for t in (int, float, str):
        if isinstance(value, t):
            return t(value)
    return str(value)


def _host(r, hnode, hname, h, where, gname, role, explicit_role, gprofile, gstack, gssh,
          gvars, cstack, cssh, base, mirror_name, group_has_profile) -> Host | None:  # fmt: skip
    loc = r.key_loc(hnode, hname)
    if (
        isinstance(hname, bool)
        or not isinstance(hname, str | int)
        or not NAME_RE.fullmatch(str(hname))
    ):
        r.error(loc, f"host name {hname!r}: use letters, digits, '.', '_' or '-'")
        return None
    hname = str(hname)
    if h is None:
        h = CommentedMap()
    if not isinstance(h, CommentedMap):
        r.error(r.value_loc(hnode, hname), f"{where}.{hname}: expected a mapping, got {_tn(h)}")
        return None
    hw = f"{where}.{hname}"
    r.check_keys(h, HOST_KEYS, hw)
    address = r.string(h, "address", hw)
    if address is Missing:
        address = hname  # resolved by DNS / ssh config, as Ansible does
    elif address_problem(address):
        # It reaches ssh's argv and the drain/undrain hook commands.
        r.error(r.value_loc(h, "address"), f"{hw}.address: {address_problem(address)}, got {address!r}")  # fmt: skip
    profile = _profile(r, h, hw) or gprofile
    domains: dict[str, str] = {}
    d = r.mapping(h, "domains", hw)
    if d is not None:
        for k, v in d.items():
            if isinstance(v, dict | list) or v is None:
                r.error(r.value_loc(d, k), f"{hw}.domains.{k}: expected a string, got {_tn(v)}")
            else:
                domains[str(k)] = str(v)
    rack = r.string(h, "rack", hw)
    if rack is not Missing:
        if "rack" in domains and domains["rack"] != rack:
            r.error(
                r.key_loc(h, "rack"),
                f"{hw}: rack {rack!r} conflicts with domains.rack {domains['rack']!r}",
            )
        domains["rack"] = rack
    hstack = _stack_layer(r, h, hw)
    hssh = _ssh_layer(r, h, hw, base)
    port = r.integer(h, "port", hw, 1, 65535)
    if port is not Missing:
        hssh["port"] = (port, r.value_loc(h, "port"))
    hvars = {**gvars, **_vars(r, h, hw)}
    if not explicit_role and hname == mirror_name:
        role = "mirror"  # the host `cluster.mirror.host` names needs no `role: mirror`
    ssh: SSHSettings = layers.build_ssh(layers.merge(cssh, gssh, hssh), base)
    stack: Stack | None = None
    if role == "gpu":
        if profile is None and "profile" not in h and not group_has_profile:
            from gpuprov.tables import profiles

            r.error(loc, f"gpu host {hname!r} has no profile; set groups.{gname}.profile or the "
                    f"host's profile (known: {', '.join(sorted(profiles()))})")  # fmt: skip
        stack = layers.build_stack(r, layers.merge(cstack, gstack, hstack), loc, hname)
    else:
        for layer, lw in ((gstack, f"groups.{gname}"), (hstack, hw)):
            if layer:
                r.error(
                    layer["_loc"],
                    f"{lw}.stack: only gpu hosts have a stack (this host's role is {role})",
                )
    return Host(hname, str(address), role, gname, ssh, stack, profile, domains, hvars, loc)


def _cluster_stack(r: Reader, cstack: layers.Layer, hosts: dict[str, Host]) -> Stack:
    gpu = [h for h in hosts.values() if h.stack is not None]
    if cstack.get("driver", {}).keys() >= {"branch", "version"}:
        s = layers.build_stack(r, cstack, cstack["_loc"], "cluster")
        if s is not None:
            return s
    if gpu:
        return gpu[0].stack  # type: ignore[return-value]
    # No GPU hosts: a placeholder keeps the model total.
    return Stack(driver=DriverPin(branch="", version=""))
