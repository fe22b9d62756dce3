from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuprov.errors import InputError, Location
from gpuprov.inventory.model import Host, RolloutPolicy, SSHSettings
from gpuprov.rollout.planner import allowed_failures, parse_amount, plan_rollout

LOC = Location("inv.yaml", 12, 3)


def host(name: str, rack: str | None) -> Host:
    return Host(
        name, "10.0.0.1", "gpu", "g", SSHSettings(), None, None, {"rack": rack} if rack else {}
    )


def domain(h: Host) -> str:
    return h.domains.get("rack") or f"own:{h.name}"


amounts = st.one_of(st.integers(0, 5), st.integers(0, 100).map(lambda p: f"{p}%"))


@st.composite
def cases(draw):
    n = draw(st.integers(0, 40))
    racks = draw(st.integers(1, 6))
    hosts = [
        host(
            f"h{i:02d}",
            draw(st.one_of(st.none(), st.integers(0, racks - 1).map(lambda r: f"r{r}"))),
        )
        for i in range(n)
    ]
    pcts = sorted(draw(st.lists(st.integers(1, 100), min_size=1, max_size=4)))
    waves = tuple(f"{p}%" for p in pcts)
    policy = RolloutPolicy(
        canary=draw(amounts),
        waves=waves,
        max_fail=draw(amounts),
        max_per_domain=draw(st.one_of(st.none(), st.integers(1, 3))),
        location=LOC,
    )
    converged = {h.name for h in hosts if draw(st.booleans()) and draw(st.booleans())}
    return hosts, policy, converged


@settings(max_examples=300, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_plan_properties(case, rnd):
    hosts, policy, converged = case
    plan = plan_rollout(hosts, policy, converged=converged, seed="prod")
    by_name = {h.name: h for h in hosts}

    # every host in exactly one wave, or skipped (converged)
    placed = [n for w in plan.waves for n in w.hosts]
    assert sorted(placed + list(plan.skipped)) == sorted(by_name)
    assert set(plan.skipped) == converged
    assert all(w.hosts for w in plan.waves)
    assert [w.index for w in plan.waves] == list(range(len(plan.waves)))

    # never more than max_per_domain hosts of one domain in a wave
    if policy.max_per_domain is not None:
        for w in plan.waves:
            assert (
                max(Counter(domain(by_name[n]) for n in w.hosts).values()) <= policy.max_per_domain
            )

    # canary first
    kinds = [w.canary for w in plan.waves]
    assert kinds == sorted(kinds, reverse=True)
    if policy.canary not in (0, "0%") and len(hosts) > len(converged):
        assert plan.waves[0].canary and plan.waves[0].name == "canary"

    # deterministic, and independent of the order the inventory lists hosts in
    shuffled = hosts[:]
    rnd.shuffle(shuffled)
    again = plan_rollout(shuffled, policy, converged=converged, seed="prod")
    assert again.to_dict() == plan.to_dict()


def test_canary_and_early_waves_spread_over_racks():
    hosts = [
        host(f"h{i:02d}", f"r{i // 4}") for i in range(16)
    ]  # 4 racks of 4, listed rack by rack
    plan = plan_rollout(hosts, RolloutPolicy(canary=4, waves=("100%",)), seed="x")
    canary = plan.waves[0]
    assert canary.canary and len(canary.hosts) == 4
    assert len({hosts[int(n[1:])].rack for n in canary.hosts}) == 4


def test_domain_limit_spills_into_extra_waves():
    hosts = [host(f"h{i}", "r0") for i in range(5)] + [host("solo", None)]
    policy = RolloutPolicy(canary=0, waves=("100%",), max_per_domain=2)
    plan = plan_rollout(hosts, policy, seed="x")
    assert [w.name for w in plan.waves] == ["wave 1", "wave 1b", "wave 1c"]
    assert [len(w.hosts) for w in plan.waves] == [3, 2, 1]  # the rackless host rides in wave 1


def test_waves_short_of_100_percent_still_cover_every_host():
    hosts = [host(f"h{i}", None) for i in range(10)]
    plan = plan_rollout(hosts, RolloutPolicy(canary=1, waves=("10%", "50%")), seed="x")
    assert [len(w.hosts) for w in plan.waves] == [1, 1, 4, 4]
    assert plan.waves[-1].name == "wave 3"


def test_seed_changes_order_but_not_membership():
    hosts = [host(f"h{i:02d}", None) for i in range(20)]
    policy = RolloutPolicy(canary=1, waves=("100%",))
    a = plan_rollout(hosts, policy, seed="cluster-a")
    b = plan_rollout(hosts, policy, seed="cluster-b")
    assert a.waves[0].hosts != b.waves[0].hosts or a.waves[1].hosts != b.waves[1].hosts
    assert sorted(a.host_names) == sorted(b.host_names)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (RolloutPolicy(canary="ten", location=LOC), "rollout.canary: expected a host count"),
        (RolloutPolicy(waves=("50%", "10%"), location=LOC), "must not decrease"),
        (RolloutPolicy(waves=("150%",), location=LOC), "over 100%"),
        (RolloutPolicy(waves=(), location=LOC), "at least one wave"),
        (RolloutPolicy(max_fail="lots", location=LOC), "rollout.max_fail"),
        (RolloutPolicy(max_per_domain=0, location=LOC), "rollout.max_per_domain"),
        (RolloutPolicy(drain="scontrol drain {node}", location=LOC), "unknown placeholder {node}"),
    ],
)
def test_bad_policy_is_a_located_error(policy, message):
    with pytest.raises(InputError) as err:
        plan_rollout([host("a", None)], policy)
    assert "inv.yaml:12:3" in str(err.value)
    assert message in str(err.value)


def test_all_problems_reported_at_once():
    with pytest.raises(InputError) as err:
        plan_rollout([], RolloutPolicy(canary="x", max_fail="y", location=LOC))
    assert len(err.value.problems) == 2


@pytest.mark.parametrize(
    ("size", "max_fail", "allowed"),
    [
        (10, "10%", 1),
        (15, "10%", 1),
        (20, "10%", 2),
        (10, "5%", 0),
        (3, "0", 0),
        (3, "2", 2),
        (100, "2.5%", 2),
        (7, 1, 1),
    ],
)
def test_allowed_failures(size, max_fail, allowed):
    assert allowed_failures(size, max_fail) == allowed


def test_parse_amount():
    assert parse_amount("10%", "waves", LOC).of(5) == 1
    assert parse_amount("3", "canary", LOC).of(2) == 2
    assert parse_amount(0, "canary", LOC).of(9) == 0
    with pytest.raises(InputError):
        parse_amount(True, "canary", LOC)
    with pytest.raises(InputError):
        parse_amount("1.5", "canary", LOC)
