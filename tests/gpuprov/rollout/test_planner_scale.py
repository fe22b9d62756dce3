"""The planner's work grows linearly with the hosts (counted in lines run, not timed)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gpuprov.inventory.model import Host, RolloutPolicy, SSHSettings
from gpuprov.rollout.planner import domain_of, pack, plan_rollout

from .opcount import lines_run

PLANNER = ("gpuprov/rollout/planner.py",)


def host(name: str, rack: str | None) -> Host:
    return Host(
        name, "10.0.0.1", "gpu", "g", SSHSettings(), None, None, {"rack": rack} if rack else {}
    )


def plan_work(hosts: list[Host], policy: RolloutPolicy) -> int:
    return lines_run(PLANNER, plan_rollout, hosts, policy, seed="c")


def test_one_crowded_domain_plans_in_linear_work() -> None:
    # Every host in one rack, one per wave: each host its own wave. First fit that looks
    # at every wave for every host is quadratic (16x the work for 4x the hosts).
    policy = RolloutPolicy(waves=("100%",), max_per_domain=1)
    small = plan_work([host(f"h{i:04d}", "r1") for i in range(100)], policy)
    large = plan_work([host(f"h{i:04d}", "r1") for i in range(400)], policy)
    assert large < 5 * small, (small, large)


def test_site_sized_plan_is_linear() -> None:
    # 8 hosts per rack, at most 2 of a rack per wave, the default-like policy.
    policy = RolloutPolicy(canary=1, waves=("10%", "50%", "100%"), max_per_domain=2)

    def site(n: int) -> list[Host]:
        return [host(f"gpu{i:05d}", f"r{i // 8:04d}") for i in range(n)]

    small, large = plan_work(site(500), policy), plan_work(site(2000), policy)
    assert large < 5 * small, (small, large)


def first_fit(hosts: list[Host], key: str, limit: int) -> list[list[str]]:
    """The definition: each host into the first group with room for its domain."""
    groups: list[list[Host]] = []
    for h in hosts:
        for group in groups:
            if sum(domain_of(g, key) == domain_of(h, key) for g in group) < limit:
                group.append(h)
                break
        else:
            groups.append([h])
    return [[h.name for h in g] for g in groups]


@settings(max_examples=200, deadline=None)
@given(
    racks=st.lists(st.one_of(st.none(), st.sampled_from("abcd")), max_size=40),
    limit=st.integers(1, 4),
)
def test_pack_is_first_fit(racks: list[str | None], limit: int) -> None:
    hosts = [host(f"h{i}", r) for i, r in enumerate(racks)]
    assert [[h.name for h in g] for g in pack(hosts, "rack", limit)] == first_fit(
        hosts, "rack", limit
    )
