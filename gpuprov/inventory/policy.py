"""The cluster-wide sections `mirror:` and `rollout:` of an inventory (docs/inventory.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from gpuprov.errors import Location
from gpuprov.inventory.hook_template import template_problem
from gpuprov.inventory.model import CommandGate, Host, MirrorRef, RolloutPolicy
from gpuprov.inventory.reader import Missing, Reader, type_name

MIRROR_KEYS = (
    "host", "apt_port", "registry_port", "models_port", "scheme", "keyring", "rpm_keys", "nearest",
)  # fmt: skip
DOMAIN_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
ROLLOUT_KEYS = (
    "canary", "waves", "max_fail", "failure_domain", "max_per_domain",
    "gates", "drain", "undrain", "hook_host", "pause_between_waves",
)  # fmt: skip
GATES = ("nvidia-smi", "dcgm-diag", "container")
PERCENT_RE = re.compile(r"(\d{1,3})%", re.ASCII)


def _tn(v: Any) -> str:
    return type_name(v)


def read_mirror(
    r: Reader, cnode: CommentedMap, hosts: dict[str, Host], base: Path | None = None
) -> MirrorRef | None:
    m = r.mapping(cnode, "mirror", "cluster")
    if m is None:
        return None
    r.check_keys(m, MIRROR_KEYS, "cluster.mirror")
    host = r.string(m, "host", "cluster.mirror")
    if host is Missing:
        r.error(
            r.key_loc(cnode, "mirror"),
            "cluster.mirror: missing `host` (the inventory host serving the mirror)",
        )
        return None
    if host not in hosts:
        from gpuprov.inventory.reader import suggest

        r.error(r.value_loc(m, "host"), f"cluster.mirror.host {host!r} is not a host of this inventory"
                f"{suggest(host, hosts)}")  # fmt: skip
    elif hosts[host].role == "gpu":
        r.warn(
            r.value_loc(m, "host"), f"mirror host {host!r} is a gpu host (its group has role: gpu)"
        )
    kw: dict[str, Any] = {}
    for key in ("apt_port", "registry_port", "models_port"):
        v = r.integer(m, key, "cluster.mirror", 1, 65535)
        if v is not Missing:
            kw[key] = v
    scheme = r.string(m, "scheme", "cluster.mirror", ("http", "https"))
    if scheme is not Missing:
        kw["scheme"] = scheme
    for key in ("keyring", "rpm_keys"):
        if key in m:
            from gpuprov.inventory.bundle import _file

            found = _file(
                r, m, key, f"cluster.mirror.{key}", base or Path(r.file).absolute().parent
            )
            if found is not None:
                kw[key] = found
    nearest = r.string_list(m, "nearest", "cluster.mirror")
    if nearest is not Missing:
        bad = [k for k in nearest if not DOMAIN_KEY_RE.fullmatch(k)]
        if bad or not nearest:
            r.error(r.value_loc(m, "nearest"), "cluster.mirror.nearest: expected failure-domain "
                    f"keys like rack, row (letters, digits, _ . -), got {bad or nearest!r}")  # fmt: skip
        else:
            kw["nearest"] = tuple(nearest)
    return MirrorRef(host=host, location=r.node_loc(m), **kw)


def _count_or_percent(r: Reader, node: CommentedMap, key: str, where: str, value: Any, loc: Location,
                      zero_ok: bool) -> Any:  # fmt: skip
    if isinstance(value, bool) or not isinstance(value, int | str):
        r.error(
            loc, f'{where}.{key}: expected a count or a percentage like "10%", got {_tn(value)}'
        )
        return Missing
    if isinstance(value, int) or value.isdigit():
        n = int(value)
        if n < 0 or (n == 0 and not zero_ok):
            r.error(
                loc,
                f"{where}.{key}: count must be {'0 or more' if zero_ok else 'at least 1'}, got {n}",
            )
            return Missing
        return n if isinstance(value, int) else str(n)
    m = PERCENT_RE.fullmatch(value.strip())
    if not m or not (0 if zero_ok else 1) <= int(m.group(1)) <= 100:
        r.error(loc, f'{where}.{key}: bad percentage {value!r}; expected "1%" to "100%" or a count')
        return Missing
    return value.strip()


def read_rollout(r: Reader, node: CommentedMap | None) -> RolloutPolicy:
    if node is None:
        return RolloutPolicy()
    w = "rollout"
    r.check_keys(node, ROLLOUT_KEYS, w)
    kw: dict[str, Any] = {"location": r.node_loc(node)}
    if "canary" in node:
        v = _count_or_percent(
            r, node, "canary", w, node["canary"], r.value_loc(node, "canary"), True
        )
        if v is not Missing:
            kw["canary"] = v
    if "max_fail" in node:
        v = _count_or_percent(
            r, node, "max_fail", w, node["max_fail"], r.value_loc(node, "max_fail"), True
        )
        if v is not Missing:
            kw["max_fail"] = str(v)
    if "waves" in node:
        waves = node["waves"]
        if not isinstance(waves, list) or not waves:
            r.error(
                r.value_loc(node, "waves"),
                f'rollout.waves: expected a non-empty list like ["10%", "100%"], got {_tn(waves)}',
            )
        else:
            out, last = [], -1
            for i, item in enumerate(waves):
                v = _count_or_percent(r, node, f"waves[{i}]", w, item, r.value_loc(waves, i), False)
                if v is Missing:
                    continue
                if isinstance(v, str) and v.endswith("%"):
                    pct = int(v[:-1])
                    if pct <= last:
                        r.error(
                            r.value_loc(waves, i),
                            f"rollout.waves[{i}]: waves are cumulative; {v} must be more than the wave before",
                        )
                    last = pct
                out.append(str(v))
            kw["waves"] = tuple(out)
    v = r.string(node, "failure_domain", w)
    if v is not Missing:
        kw["failure_domain"] = v
    v = r.integer(node, "max_per_domain", w, 1)
    if v is not Missing:
        kw["max_per_domain"] = v
    if "gates" in node:
        gates = read_gates(r, node)
        if gates is not Missing:
            kw["gates"] = gates
    for key in ("drain", "undrain"):
        v = r.string(node, key, w)
        if v is Missing:
            continue
        bad = template_problem(v)
        if bad:
            r.error(r.value_loc(node, key), f"rollout.{key}: {bad}")
        kw[key] = v
    v = r.string(node, "hook_host", w)
    if v is not Missing:
        kw["hook_host"] = v
    v = r.boolean(node, "pause_between_waves", w)
    if v is not Missing:
        kw["pause_between_waves"] = v
    return RolloutPolicy(**kw)


def read_gates(r: Reader, node: CommentedMap) -> Any:
    """`gates:` items are built-in gate names or `{command: "...", timeout: 300}` mappings."""
    from gpuprov.inventory.reader import suggest

    value = node["gates"]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        r.error(r.value_loc(node, "gates"), f"rollout.gates: expected a list, got {_tn(value)}")
        return Missing
    out: list[str | CommandGate] = []
    for i, item in enumerate(value):
        loc = r.value_loc(value, i)
        if isinstance(item, CommentedMap):
            r.check_keys(item, ("command", "timeout"), f"rollout.gates[{i}]")
            command = r.string(item, "command", f"rollout.gates[{i}]")
            if command is Missing or not str(command).strip():
                r.error(loc, f'rollout.gates[{i}]: a command gate needs `command: "..."`')
                continue
            bad = template_problem(command)
            if bad:
                r.error(r.value_loc(item, "command"), f"rollout.gates[{i}].command: {bad}")
                continue
            timeout = r.integer(item, "timeout", f"rollout.gates[{i}]", 1)
            extra = {} if timeout is Missing else {"timeout": timeout}
            out.append(CommandGate(command, location=r.node_loc(item), **extra))
        elif isinstance(item, str) and item in GATES:
            out.append(item)
        elif isinstance(item, str):
            r.error(loc, f"rollout.gates: unknown gate {item!r}{suggest(item, GATES)} "
                    f"(known: {', '.join(GATES)}, or {{command: \"...\"}})")  # fmt: skip
        else:
            r.error(loc, f"rollout.gates[{i}]: expected a gate name or {{command: ...}}, got {_tn(item)}")  # fmt: skip
    return tuple(out)
