"""Host ranges in gpuprov's own format: one line for a rack row of a 1,000-node site.

    hosts:
      gpu[001:128]:
        address: 10.20.1.11      # the first host's; each next host +1
        hosts_per_rack: 16       # gpu001-016 in rack 1, gpu017-032 in rack 2, ...
        rack: "b{rack:02d}"      # b01 ... b08 (default "r{rack:02d}")

`address` is either a start IPv4 address or a pattern of `{n}` (the number in the host's
name: 1 for gpu001), `{i}` (its position in the range, from 0) and `{rack}`, with an
optional format: `"10.20.{rack}.{n}"`, `"gpu{n:03d}.hall-b.example"`. `rack` is a fixed
name or a pattern of `{rack}` (the rack number, from `first_rack`, default 1, counting
`hosts_per_rack` hosts a rack). Every other host key (port, profile, stack, ssh, vars,
domains) applies to each host. The loader expands ranges before validation, so every
host is then an ordinary one, addressable by name in --limit, errors, state and reports,
and its errors point at the range's line. Two ranges (or a range and a host) naming the
same host are an error naming both lines; so are duplicate addresses (the loader's check).
"""

from __future__ import annotations

import ipaddress
import re
import string
from typing import Any

from ruamel.yaml.comments import CommentedMap

from gpuprov.errors import Location
from gpuprov.inventory import ranges
from gpuprov.inventory.reader import Reader, type_name

RANGE_KEYS = ("hosts_per_rack", "first_rack")
PLACEHOLDERS = {"n", "i", "rack"}
FIELD_RE = re.compile(r"[0-9]*d?")  # format specs allowed: "{n:03d}", "{rack:02}"


def expand_groups(root: CommentedMap, r: Reader) -> None:
    """Replace every range key under `groups.*.hosts` by the hosts it stands for."""
    groups = root.get("groups")
    if not isinstance(groups, CommentedMap):
        return
    first: dict[str, tuple[str, Location]] = {}  # host name -> (entry key, where)
    for gname, g in groups.items():
        if isinstance(g, CommentedMap) and isinstance(g.get("hosts"), CommentedMap):
            g["hosts"] = _expand_hosts(r, g["hosts"], f"groups.{gname}.hosts", first)


def _expand_hosts(r: Reader, hosts: CommentedMap, where: str, first: dict) -> CommentedMap:
    if not any(isinstance(k, str) and ranges.has_range(k) for k in hosts):
        for k in hosts:
            first.setdefault(str(k), (str(k), r.key_loc(hosts, k)))
        return hosts
    out = CommentedMap()
    out.lc.line, out.lc.col = hosts.lc.line, hosts.lc.col
    out.ca.items.update(hosts.ca.items)
    for key, entry in hosts.items():
        loc = r.key_loc(hosts, key)
        pos = list(hosts.lc.data.get(key, [0, 0, 0, 0]))
        if not (isinstance(key, str) and ranges.has_range(key)):
            if _claim(r, first, str(key), str(key), loc):
                out[key] = entry
                out.lc.add_kv_line_col(key, pos)
            continue
        for name, host in _range(r, key, entry, f"{where}.{key}", loc, pos):
            if _claim(r, first, name, key, loc):
                out[name] = host
                out.lc.add_kv_line_col(name, pos)
    return out


def _claim(r: Reader, first: dict, name: str, key: str, loc: Location) -> bool:
    if name not in first:
        first[name] = (key, loc)
        return True
    other, oloc = first[name]
    if other == key and oloc == loc:
        return True
    what = "ranges" if ranges.has_range(key) and ranges.has_range(other) else "entries"
    r.error(loc, f"overlapping {what}: {key!r} and {other!r} (at {oloc}) both name host {name!r}")
    return False


def _range(r: Reader, key: str, entry: Any, where: str, loc: Location, pos: list):
    """(name, host mapping) for each host of one range entry; problems go to `r`."""
    try:
        names = ranges.expand(key)
    except ranges.RangeError as exc:
        r.error(loc, str(exc))
        return []
    if entry is None:
        entry = CommentedMap()
    if not isinstance(entry, CommentedMap):
        r.error(loc, f"{where}: expected a mapping, got {type_name(entry)}")
        return []
    per_rack = r.integer(entry, "hosts_per_rack", where, 1, 100_000)
    first_rack = r.integer(entry, "first_rack", where, 0, 1_000_000)
    per_rack = None if not isinstance(per_rack, int) else per_rack
    first_rack = 1 if not isinstance(first_rack, int) else first_rack
    numbers = _numbers(key)
    address = entry.get("address")
    rack = entry.get("rack", "r{rack:02d}" if per_rack else None)
    start = _start_address(address)
    for field, value in (("address", address), ("rack", rack)):
        if isinstance(value, str) and "{" in value and start is None:
            bad = _check_pattern(value, numbers is not None, per_rack is not None)
            if bad:
                r.error(
                    r.value_loc(entry, field) if field in entry else loc, f"{where}.{field}: {bad}"
                )
                return []
    if start is not None and int(start) + len(names) - 1 > int(
        ipaddress.IPv4Address("255.255.255.255")
    ):
        r.error(
            r.value_loc(entry, "address"),
            f"{where}.address: {len(names)} hosts from {start} run past 255.255.255.255",
        )
        return []
    out = []
    for i, name in enumerate(names):
        values = {"i": i, "n": numbers[i] if numbers else None}
        values["rack"] = first_rack + i // per_rack if per_rack else None
        host = CommentedMap()
        host.lc.line, host.lc.col = pos[0], pos[1]
        for k, v in entry.items():
            if k in RANGE_KEYS:
                continue
            if k == "address" and start is not None:
                v = str(start + i)
            elif k in ("address", "rack") and isinstance(v, str) and "{" in v:
                v = v.format(**{p: x for p, x in values.items() if x is not None})
            host[k] = v
            host.lc.add_kv_line_col(k, list(entry.lc.data.get(k, pos)))
        if "rack" not in entry and rack is not None:
            host["rack"] = rack.format(rack=values["rack"])
            host.lc.add_kv_line_col("rack", pos)
        out.append((name, host))
    return out


def _start_address(value: Any) -> ipaddress.IPv4Address | None:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", value):
        return None
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def _numbers(key: str) -> list[int] | None:
    """The number in each host name when the key has one numeric range, else None."""
    bodies = ranges.RANGE_RE.findall(key)
    if len(bodies) != 1:
        return None
    seq = ranges.expand(f"[{bodies[0]}]")
    return [int(s) for s in seq] if all(s.isdigit() for s in seq) else None


def _check_pattern(pattern: str, has_n: bool, has_rack: bool) -> str | None:
    """Why `pattern` cannot be formatted, or None."""
    try:
        fields = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        return f"bad pattern {pattern!r}: {exc}"
    for _, name, spec, conv in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS or conv or not FIELD_RE.fullmatch(spec or ""):
            return (
                f"bad placeholder {{{name}{':' + spec if spec else ''}}} in {pattern!r} "
                "(use {n}, {i} or {rack}, optionally padded: {n:03d})"
            )
        if name == "n" and not has_n:
            return f"{{n}} in {pattern!r} needs a key with one numeric range, like gpu[001:128]"
        if name == "rack" and not has_rack:
            return f"{{rack}} in {pattern!r} needs hosts_per_rack"
    return None
