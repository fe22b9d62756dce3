"""Ansible INI inventories (`config/inventory` in a DeepOps checkout).

`read_ini` parses the file with Ansible's own rules (ansible/plugins/inventory/ini.py,
proved against `ansible-inventory --list` by tests/gpuprov/inventory/test_ansible_oracle.py):
`[group]` host lines with inline `key=value` vars (values read as Python literals, so
`port=22` is a number, `flag=True` a boolean and `'580'` a string), `[group:vars]`,
`[group:children]`, `host:port`, ranges (`dgx[01:16]`), `#` and `;` comments. It returns
the same tree an Ansible YAML inventory gives (`all: {vars, hosts, children}`), every
key carrying the INI line and column it came from, so `ansible.to_native` maps variables
and the loader validates exactly as for YAML, with errors pointing into the INI file.

gpuprov groups are disjoint and Ansible's are not, so the tree is flattened here with
Ansible's variable precedence: each host goes to the first group that lists it (other
than `all`), that group carries its own and its ancestors' vars (parents first), and a
host gets as host vars whatever the rest of its groups change. Every host thus resolves
to the values Ansible would give it.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from gpuprov.inventory import ranges
from gpuprov.inventory.aliases import ANSIBLE_KEY
from gpuprov.inventory.reader import Reader
from gpuprov.inventory.source import COMMENT, SECTION_RE, read_text

GROUPNAME_RE = re.compile(r"([^:\]\s]+)\s*(?:#.*)?")


@dataclass
class _Var:
    value: Any
    line0: int
    kcol0: int
    vcol0: int


@dataclass
class _Group:
    name: str
    line0: int
    col0: int
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, _Var] = field(default_factory=dict)


@dataclass
class _Host:
    name: str
    line0: int
    col0: int
    vars: dict[str, _Var] = field(default_factory=dict)


@dataclass
class IniInventory:
    groups: dict[str, _Group]
    hosts: dict[str, _Host]


def literal(text: str) -> Any:
    """A value as Ansible's INI reader reads it: a Python literal, else the string."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    if isinstance(value, list | tuple | set):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _coerce(v) for k, v in value.items()}
    if value is ... or isinstance(value, complex | bytes):
        return str(value) if value is not ... else "..."
    return value


def parse(text: str, r: Reader) -> IniInventory:
    """Parse INI text; every problem goes to `r` (FILE:LINE:COL)."""
    groups: dict[str, _Group] = {"all": _Group("all", 0, 0), "ungrouped": _Group("ungrouped", 0, 0)}
    hosts: dict[str, _Host] = {}
    pending_vars: dict[str, int] = {}  # group named only by [g:vars] so far -> line0
    pending_children: dict[str, tuple[int, int, list[str]]] = {}  # child -> (line0, col0, parents)
    declared = {"all", "ungrouped"}
    group, state = "ungrouped", "hosts"

    def declare(name: str, line0: int, col0: int) -> None:
        if name not in groups:
            groups[name] = _Group(name, line0, col0)

    for line0, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if not line or line.startswith(COMMENT):
            continue
        col0 = len(raw) - len(raw.lstrip())
        m = SECTION_RE.fullmatch(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                r.error(r.loc(line0, col0), f"section [{group}:{state}]: unknown type {state!r} "
                        "(expected [group], [group:vars] or [group:children])")  # fmt: skip
                state = "skip"
                continue
            declare(group, line0, col0 + 1)
            if state == "vars":
                if group not in declared:
                    pending_vars.setdefault(group, line0)
            else:
                declared.add(group)
                pending_vars.pop(group, None)
                if group in pending_children:
                    _, _, parents = pending_children.pop(group)
                    for parent in parents:
                        _link(groups, parent, group)
            continue
        if line.startswith("[") and line.endswith("]"):
            r.error(r.loc(line0, col0), f"invalid section {line!r}: expected [group], "
                    "[group:vars] or [group:children], with no spaces")  # fmt: skip
            state = "skip"
            continue
        if state == "hosts":
            _host_line(r, raw, line0, col0, groups[group], hosts)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                r.error(r.loc(line0, col0), f"[{group}:vars]: expected key=value, got {line!r}")
                continue
            vcol0 = col0 + len(key) + 1 + (len(value) - len(value.lstrip()))
            groups[group].vars[key.strip()] = _Var(literal(value.strip()), line0, col0, vcol0)
        elif state == "children":
            cm = GROUPNAME_RE.fullmatch(line)
            if cm is None:
                r.error(
                    r.loc(line0, col0), f"[{group}:children]: expected a group name, got {line!r}"
                )
                continue
            child = cm.group(1)
            if child in declared:
                _link(groups, group, child)
                if _cycle(groups, child):
                    r.error(r.loc(line0, col0), f"[{group}:children]: {child!r} is an ancestor "
                            f"of {group!r} (groups would contain themselves)")  # fmt: skip
                    groups[group].children.remove(child)
                    groups[child].parents.remove(group)
            else:
                entry = pending_children.setdefault(child, (line0, col0, []))
                entry[2].append(group)
                declare(child, line0, col0)
    for name, line0 in pending_vars.items():
        r.error(r.loc(line0, 0), f"section [{name}:vars] is for a group that is never defined")
    for child, (line0, col0, parents) in pending_children.items():
        r.error(r.loc(line0, col0),
                f"section [{parents[-1]}:children] includes undefined group {child!r}")  # fmt: skip
    for name in pending_children:
        groups.pop(name, None)
    return IniInventory(groups, hosts)


def _link(groups: dict[str, _Group], parent: str, child: str) -> None:
    if child not in groups[parent].children:
        groups[parent].children.append(child)
        groups[child].parents.append(parent)


def _cycle(groups: dict[str, _Group], start: str) -> bool:
    seen: set[str] = set()
    stack = list(groups[start].children)
    while stack:
        g = stack.pop()
        if g == start:
            return True
        if g not in seen:
            seen.add(g)
            stack.extend(groups[g].children)
    return False


def _host_line(r: Reader, raw: str, line0: int, col0: int, group: _Group, hosts: dict) -> None:
    try:
        tokens = shlex.split(raw, comments=True)
    except ValueError as exc:
        r.error(r.loc(line0, col0), f"cannot read host line: {exc}")
        return
    if not tokens:
        return
    pattern, port = tokens[0], None
    m = re.fullmatch(r"(.*[^:]):([0-9]+)", pattern)
    if m and not pattern.startswith("[") and m.group(1).count(":") == 0:
        pattern, port = m.group(1), int(m.group(2))
    elif pattern.endswith(":"):
        r.error(r.loc(line0, col0), f"host {pattern!r}: a trailing ':' must be followed by a port")
        return
    try:
        names = ranges.expand(pattern)
    except ranges.RangeError as exc:
        r.error(r.loc(line0, col0), str(exc))
        return
    variables: dict[str, _Var] = {}
    if port is not None:
        variables["ansible_port"] = _Var(port, line0, col0, col0)
    pos = raw.find(tokens[0], col0) + len(tokens[0])
    for tok in tokens[1:]:
        # find the token in the raw line for its column (quotes make it approximate)
        key, sep, value = tok.partition("=")
        at = raw.find(key + sep, pos)
        kcol0 = at if at >= 0 else col0
        pos = max(pos, kcol0 + 1)
        if not sep or not key:
            r.error(r.loc(line0, kcol0), f"expected key=value host variable, got {tok!r}")
            continue
        variables[key] = _Var(literal(value), line0, kcol0, kcol0 + len(key) + 1)
    for name in names:
        host = hosts.get(name)
        if host is None:
            host = hosts[name] = _Host(name, line0, col0)
        host.vars.update(variables)
        if name not in group.hosts:
            group.hosts.append(name)


# ---- the Ansible-YAML-shaped tree --------------------------------------------------------


def _depths(groups: dict[str, _Group]) -> dict[str, int]:
    """Ansible's group depth: the longest path from `all` (top-level groups are 1)."""
    memo: dict[str, int] = {"all": 0}

    def depth(name: str, trail: frozenset[str] = frozenset()) -> int:
        if name in memo:
            return memo[name]
        parents = [p for p in groups[name].parents if p not in trail] or ["all"]
        d = 1 + max(depth(p, trail | {name}) for p in parents)
        memo[name] = d
        return d

    for name in groups:
        depth(name)
    return memo


def _ancestors(groups: dict[str, _Group], name: str) -> set[str]:
    out: set[str] = set()
    stack = [name]
    while stack:
        g = stack.pop()
        if g in out:
            continue
        out.add(g)
        stack.extend(groups[g].parents)
    out.discard("all")
    return out


def _resolved(groups: dict[str, _Group], names: set[str], depth: dict[str, int]) -> dict[str, _Var]:
    """Vars of `names` merged as Ansible does: by depth, then name; later wins."""
    out: dict[str, _Var] = {}
    for g in sorted(names, key=lambda n: (depth[n], n)):
        out.update(groups[g].vars)
    return out


def _map(r: Reader, line0: int, col0: int) -> CommentedMap:
    m = CommentedMap()
    m.lc.line, m.lc.col = line0, col0
    return m


def _value(v: _Var) -> Any:
    """Dicts and lists as ruamel nodes located at the variable (the loader reads them)."""

    def conv(x: Any) -> Any:
        if isinstance(x, dict):
            m = CommentedMap()
            m.lc.line, m.lc.col = v.line0, v.vcol0
            for k, val in x.items():
                m[k] = conv(val)
                m.lc.add_kv_line_col(k, [v.line0, v.vcol0, v.line0, v.vcol0])
            return m
        if isinstance(x, list):
            s = CommentedSeq(conv(i) for i in x)
            s.lc.line, s.lc.col = v.line0, v.vcol0
            for i in range(len(x)):
                s.lc.add_kv_line_col(i, [v.line0, v.vcol0])
            return s
        return x

    return conv(v.value)


def _put(dst: CommentedMap, key: str, v: _Var) -> None:
    dst[key] = _value(v)
    dst.lc.add_kv_line_col(key, [v.line0, v.kcol0, v.line0, v.vcol0])


def to_tree(inv: IniInventory, r: Reader) -> CommentedMap:
    """The `all: {vars, hosts, children}` tree for `ansible.to_native` (see module doc)."""
    groups, hosts = inv.groups, inv.hosts
    depth = _depths(groups)
    root = _map(r, 0, 0)
    top = _map(r, 0, 0)
    root["all"] = top
    root.lc.add_kv_line_col("all", [0, 0, 0, 0])
    if groups["all"].vars:
        av = _map(r, 0, 0)
        for k, v in groups["all"].vars.items():
            _put(av, k, v)
        top["vars"] = av
    # the gpuprov group of each host: the first group listing it, `ungrouped` if none does
    home: dict[str, str] = {}
    for g in groups.values():
        if g.name in ("all", "ungrouped"):
            continue
        for h in g.hosts:
            home.setdefault(h, g.name)
    for h in hosts:
        home.setdefault(h, "ungrouped")
    member_of: dict[str, set[str]] = {h: set() for h in hosts}
    for g in groups.values():
        for h in g.hosts:
            member_of[h] |= _ancestors(groups, g.name)
    children = _map(r, 0, 0)
    for gname in [*(n for n in groups if n != "all"), "ungrouped"]:
        if gname == "ungrouped" and gname in children:
            continue
        g = groups[gname]
        mine = [h for h in hosts if home[h] == gname]
        if not mine:
            continue
        gnode = _map(r, g.line0, g.col0)
        gvars = _resolved(groups, _ancestors(groups, gname), depth)
        if gvars:
            vnode = _map(r, g.line0, g.col0)
            for k, v in gvars.items():
                _put(vnode, k, v)
            gnode["vars"] = vnode
            gnode.lc.add_kv_line_col("vars", [g.line0, g.col0, g.line0, g.col0])
        hnode = _map(r, g.line0, g.col0)
        for hname in mine:
            host = hosts[hname]
            full = {**_resolved(groups, member_of[hname], depth), **host.vars}
            own = _map(r, host.line0, host.col0)
            for k, v in full.items():
                if k not in gvars or gvars[k].value != v.value or k in host.vars:
                    _put(own, k, v)
            hnode[hname] = own
            hnode.lc.add_kv_line_col(hname, [host.line0, host.col0, host.line0, host.col0])
        gnode["hosts"] = hnode
        gnode.lc.add_kv_line_col("hosts", [g.line0, g.col0, g.line0, g.col0])
        children[gname] = gnode
        children.lc.add_kv_line_col(gname, [g.line0, g.col0, g.line0, g.col0])
    if children:
        top["children"] = children
    # Ansible's own groups, for `--limit` (aliases.py): each with all its hosts
    aliases = CommentedMap()
    for g in groups.values():
        if g.name not in ("all", "ungrouped"):
            aliases[g.name] = [h for h in hosts if g.name in member_of[h]]
    root[ANSIBLE_KEY] = aliases
    return root


def read_ini(path: Path, r: Reader) -> CommentedMap:
    """Parse the INI inventory at `path` into the tree `ansible.to_native` takes."""
    text = read_text(path, r)
    inv = parse(text, r)
    r.raise_if_problems()
    if not inv.hosts:
        r.error(r.loc(), "inventory has no hosts")
        r.raise_if_problems()
    return to_tree(inv, r)
