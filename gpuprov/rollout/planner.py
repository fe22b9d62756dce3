"""Rollout planner: hosts + RolloutPolicy -> canary and waves.

pyinfra treats a wave's hosts as a set (random order), so membership is decided here, once,
deterministically: the same inventory gives the same plan on every run and on every
machine, whatever order the hosts were listed in. That is what makes a resumed rollout
continue the plan it started, and what lets an operator read `rollout plan` before `apply`.

Ordering: each failure domain's hosts are sorted by a stable hash of (seed, host name), the
domains by a hash of (seed, domain), then hosts are dealt round-robin across domains. Any
prefix of that order is spread over as many domains as possible, so the canary and the
early waves touch many racks lightly instead of one rack heavily.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpuprov.errors import InputError, Location, Problem
from gpuprov.inventory.model import Host, RolloutPolicy

_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")
HOOK_FIELDS = frozenset({"host", "address"})


@dataclass(frozen=True)
class Amount:
    """A parsed policy value: a host count, or a percentage of some total."""

    value: float
    percent: bool

    def of(self, total: int) -> int:
        """Hosts this amount selects out of `total` (percentages round up: 10% of 5 is 1)."""
        if not self.percent:
            return min(int(self.value), total)
        return min(math.ceil(total * self.value / 100 - 1e-9), total)


@dataclass(frozen=True)
class Wave:
    index: int  # 0-based position in the plan
    name: str  # "canary", "wave 1", "wave 1b" (a spill wave forced by max_per_domain)
    hosts: tuple[str, ...]
    canary: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "hosts": list(self.hosts),
            "canary": self.canary,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Wave:
        return cls(data["index"], data["name"], tuple(data["hosts"]), bool(data.get("canary")))


@dataclass(frozen=True)
class RolloutPlan:
    waves: tuple[Wave, ...]
    skipped: tuple[str, ...] = ()  # converged hosts: nothing to do
    seed: str = ""
    # Hosts the dry run found not ready, name -> "refused" | "unreachable" | "failed":
    # in no wave (a refused host would only fail its wave and eat its max_fail).
    excluded: dict[str, str] = field(default_factory=dict)
    # The runbook steps the rollout runs (`--only`/`--skip`, deploys/steps.py); None: all.
    # Stored with the plan so `--resume` runs the same steps the rollout started with.
    steps: tuple[str, ...] | None = None
    # Host objects by name for the runner; not part of the serialised plan.
    host_objects: dict[str, Host] = field(default_factory=dict, compare=False, repr=False)

    @property
    def host_names(self) -> list[str]:
        return [name for wave in self.waves for name in wave.hosts]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seed": self.seed,
            "waves": [w.to_dict() for w in self.waves],
            "skipped": list(self.skipped),
            "excluded": dict(self.excluded),
        }
        if self.steps is not None:
            out["steps"] = list(self.steps)
        return out

    def excluded_counts(self) -> dict[str, int]:
        """{"refused": 3, "unreachable": 1}: the summary of the hosts in no wave."""
        return dict(Counter(self.excluded.values()))

    @classmethod
    def from_dict(cls, data: dict[str, Any], hosts: dict[str, Host] | None = None) -> RolloutPlan:
        return cls(
            waves=tuple(Wave.from_dict(w) for w in data["waves"]),
            skipped=tuple(data.get("skipped", ())),
            seed=data.get("seed", ""),
            excluded=dict(data.get("excluded") or {}),
            steps=tuple(data["steps"]) if data.get("steps") is not None else None,
            host_objects=dict(hosts or {}),
        )


# ---- parsing ---------------------------------------------------------------------------


def parse_amount(value: object, key: str, location: Location) -> Amount:
    """Parse a count (3, "3") or a percentage ("10%", "2.5%") with a located error."""
    if isinstance(value, bool):
        raise _bad(location, key, value)
    if isinstance(value, int):
        if value < 0:
            raise _bad(location, key, value)
        return Amount(float(value), False)
    match = _AMOUNT.match(str(value))
    if not match:
        raise _bad(location, key, value)
    number, pct = float(match.group(1)), bool(match.group(2))
    if pct and number > 100:
        raise InputError([Problem(location, f"rollout.{key}: {value!r} is over 100%")])
    if not pct and not number.is_integer():
        raise _bad(location, key, value)
    return Amount(number, pct)


def _bad(location: Location, key: str, value: object) -> InputError:
    return InputError(
        [
            Problem(
                location,
                f"rollout.{key}: expected a host count (3) or a percentage ('10%'), got {value!r}",
            )
        ]
    )


def allowed_failures(wave_size: int, max_fail: str | int) -> int:
    """Failures a wave of `wave_size` hosts may have before the rollout halts.

    A percentage rounds down (10% of 15 hosts allows 1), so "5%" on a small wave means
    zero tolerance: the safe direction. A count is used as is.
    """
    amount = parse_amount(max_fail, "max_fail", Location("<max_fail>"))
    if amount.percent:
        return math.floor(wave_size * amount.value / 100 + 1e-9)
    return int(amount.value)


def check_hook_template(template: str | None, key: str, location: Location) -> None:
    """A drain/undrain template may only use bare {host} and {address}, outside quotes."""
    from gpuprov.inventory.hook_template import template_problem

    problem = None if template is None else template_problem(template)
    if problem:
        raise InputError([Problem(location, f"rollout.{key}: {problem}")])


def validate_policy(policy: RolloutPolicy) -> tuple[Amount, list[Amount]]:
    """Check every rollout value, collecting all problems; return (canary, waves)."""
    loc = policy.location
    problems: list[Problem] = []
    canary: Amount | None = None
    waves: list[Amount] = []

    def collect(fn, *args):
        try:
            return fn(*args)
        except InputError as exc:
            problems.extend(exc.problems)
            return None

    canary = collect(parse_amount, policy.canary, "canary", loc)
    if not policy.waves:
        problems.append(Problem(loc, "rollout.waves: expected at least one wave, e.g. ['100%']"))
    for i, raw in enumerate(policy.waves):
        amount = collect(parse_amount, raw, f"waves[{i}]", loc)
        if amount is not None:
            if amount.value == 0:
                problems.append(
                    Problem(loc, f"rollout.waves[{i}]: a wave of {raw!r} selects no hosts")
                )
            waves.append(amount)
    pcts = [a.value for a in waves if a.percent]
    counts = [a.value for a in waves if not a.percent]
    if pcts != sorted(pcts) or counts != sorted(counts):
        problems.append(
            Problem(
                loc,
                f"rollout.waves: values are cumulative and must not decrease, got {list(policy.waves)}",
            )
        )
    collect(parse_amount, policy.max_fail, "max_fail", loc)
    if policy.max_per_domain is not None and (
        isinstance(policy.max_per_domain, bool)
        or not isinstance(policy.max_per_domain, int)
        or policy.max_per_domain < 1
    ):
        problems.append(
            Problem(
                loc,
                f"rollout.max_per_domain: expected a count of at least 1, got {policy.max_per_domain!r}",
            )
        )
    collect(check_hook_template, policy.drain, "drain", loc)
    collect(check_hook_template, policy.undrain, "undrain", loc)
    if problems:
        raise InputError(problems)
    assert canary is not None
    return canary, waves


# ---- ordering and packing --------------------------------------------------------------


def _key(seed: str, *parts: str) -> str:
    return hashlib.sha256("\0".join((seed, *parts)).encode()).hexdigest()


def domain_of(host: Host, key: str) -> str:
    """A host's failure domain; hosts without one are each their own domain."""
    value = host.domains.get(key)
    return f"domain:{value}" if value is not None else f"host:{host.name}"


def spread_order(hosts: Iterable[Host], key: str, seed: str) -> list[Host]:
    """Deal hosts round-robin over failure domains, each in stable hash order."""
    by_domain: dict[str, list[Host]] = {}
    for host in hosts:
        by_domain.setdefault(domain_of(host, key), []).append(host)
    queues = [
        sorted(members, key=lambda h: (_key(seed, "host", h.name), h.name))
        for _, members in sorted(
            by_domain.items(), key=lambda kv: (_key(seed, "domain", kv[0]), kv[0])
        )
    ]
    order: list[Host] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        order.extend(q[rank] for q in queues if rank < len(q))
    return order


def pack(hosts: Sequence[Host], key: str, limit: int | None) -> list[list[Host]]:
    """Split hosts into groups with at most `limit` hosts of one domain each (first fit)."""
    if limit is None:
        return [list(hosts)] if hosts else []
    groups: list[list[Host]] = []
    # First fit, in linear time: a domain's hosts fill groups in order, so the groups it has
    # filled are a prefix; its first group with room is where that prefix ends. (Trying
    # every group for every host is quadratic when one domain holds most hosts.)
    first_free: dict[str, int] = {}
    placed: dict[str, int] = {}  # hosts of the domain in group first_free[dom]
    for host in hosts:
        dom = domain_of(host, key)
        index = first_free.get(dom, 0)
        if index == len(groups):
            groups.append([])
        groups[index].append(host)
        placed[dom] = placed.get(dom, 0) + 1
        if placed[dom] == limit:
            first_free[dom], placed[dom] = index + 1, 0
        else:
            first_free[dom] = index
    return groups


def _suffix(part: int) -> str:
    """1 -> "b", 2 -> "c" ... (part 0 is the wave itself); past "z", ".27" and so on."""
    return chr(ord("a") + part) if part < 26 else f".{part + 1}"


def plan_rollout(
    hosts: list[Host],
    policy: RolloutPolicy,
    *,
    converged: Iterable[str] = frozenset(),
    seed: str = "",
    excluded: dict[str, str] | None = None,
) -> RolloutPlan:
    """Canary first, then cumulative waves of the remaining hosts, each wave holding at most
    `max_per_domain` hosts of one failure domain (a wave the limit cannot hold spills into
    extra waves named "wave 1b", "wave 1c"...). Converged hosts are skipped.

    `seed` (normally the cluster name) keeps the order stable across runs while different
    clusters get different canaries. `excluded` (hosts the dry run found refused or
    unreachable, not among `hosts`) is only recorded, for the summary.
    """
    canary_amount, wave_amounts = validate_policy(policy)
    names = [h.name for h in hosts]
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise InputError([Problem(policy.location, f"rollout: host {dupes[0]!r} listed twice")])
    done = set(converged)
    key, limit = policy.failure_domain, policy.max_per_domain
    skipped = tuple(sorted(h.name for h in hosts if h.name in done))
    order = spread_order((h for h in hosts if h.name not in done), key, seed)

    waves: list[Wave] = []

    def add(group_hosts: list[Host], name: str, canary: bool) -> None:
        for part, group in enumerate(pack(group_hosts, key, limit)):
            label = (
                name if part == 0 else f"{name}{'' if name[-1].isdigit() else ' '}{_suffix(part)}"
            )
            waves.append(Wave(len(waves), label, tuple(h.name for h in group), canary))

    n_canary = canary_amount.of(len(order))
    if n_canary:
        add(order[:n_canary], "canary", True)
    rest = order[n_canary:]
    taken, number = 0, 0
    for amount in wave_amounts:
        target = amount.of(len(rest))
        if target <= taken:
            continue  # rounding made this wave empty (e.g. 10% then 12% of 5 hosts)
        number += 1
        add(rest[taken:target], f"wave {number}", False)
        taken = target
    if taken < len(rest):
        # Waves that stop short of 100% would leave hosts untouched forever: finish them.
        add(rest[taken:], f"wave {number + 1}", False)
    return RolloutPlan(
        tuple(waves), skipped, seed, dict(excluded or {}), host_objects={h.name: h for h in hosts}
    )
