"""split(): which hosts of a dry run go into the waves, and what the plan says of the rest."""

from __future__ import annotations

import io

from gpuprov.engine.plan import HostPlan, OpChange, Plan
from gpuprov.engine.refusal import Refusal
from gpuprov.inventory.model import Host, RolloutPolicy, SSHSettings
from gpuprov.rollout.planner import RolloutPlan, plan_rollout
from gpuprov.rollout.progress import PlainProgress
from gpuprov.rollout.wave_work import split

CHANGE = [OpChange("GPU node | Preflight | Record the host's identity", "files.template")]


def host(name: str, role: str = "gpu") -> Host:
    return Host(name, "10.0.0.1", role, "g", SSHSettings(), None, None, {"rack": name[-1]})


def dry_run() -> tuple[list[Host], Plan]:
    hosts = [host("mirror", "mirror"), *(host(f"gpu{i}") for i in range(1, 7))]
    refused = [Refusal("no GPU", "reseat", "gpus"), Refusal("no room", "grow /", "disk")]
    plan = Plan({
        "mirror": HostPlan("mirror", changes=CHANGE),
        "gpu1": HostPlan("gpu1", "refused", error="2 problems", refusals=refused),
        "gpu2": HostPlan("gpu2", "unreachable", error="gpu2 (10.0.0.1:22): unreachable"),
        "gpu3": HostPlan("gpu3", changes=CHANGE),
        "gpu4": HostPlan("gpu4"),  # converged
        "gpu5": HostPlan("gpu5", "failed", error="PyinfraError: fact failed"),
        "gpu6": HostPlan("gpu6", changes=CHANGE),
    })  # fmt: skip
    return hosts, plan


def test_hosts_that_are_not_ready_are_in_no_wave():
    hosts, plan = dry_run()
    targets = split(hosts, plan)
    assert [h.name for h in targets.infra] == ["mirror"]
    assert [h.name for h in targets.gpu] == ["gpu3", "gpu4", "gpu6"]
    assert targets.converged == ["gpu4"]
    assert targets.blocked == {"gpu1": "refused", "gpu2": "unreachable", "gpu5": "failed"}

    policy = RolloutPolicy(canary=1, waves=("100%",))
    rplan = plan_rollout(targets.gpu, policy, converged=targets.converged, excluded=targets.blocked)
    assert sorted(rplan.host_names) == ["gpu3", "gpu6"] and rplan.skipped == ("gpu4",)
    assert rplan.excluded_counts() == {"refused": 1, "unreachable": 1, "failed": 1}


def test_a_refused_infrastructure_host_stays_infrastructure():
    hosts, plan = dry_run()
    plan.hosts["mirror"] = HostPlan("mirror", "refused", refusals=[Refusal("x", None, "disk")])
    assert [h.name for h in split(hosts, plan).infra] == ["mirror"]  # it fails there, first


def test_the_stored_plan_keeps_the_excluded_hosts():
    rplan = plan_rollout([host("gpu3")], RolloutPolicy(), excluded={"gpu1": "refused"})
    data = rplan.to_dict()
    assert data["excluded"] == {"gpu1": "refused"}
    assert RolloutPlan.from_dict(data).excluded == {"gpu1": "refused"}
    del data["excluded"]  # a plan stored before this field existed
    assert RolloutPlan.from_dict(data).excluded == {}


def test_the_progress_says_who_is_left_out():
    rplan = plan_rollout(
        [host("gpu3"), host("gpu6")], RolloutPolicy(canary=1, waves=("100%",)),
        excluded={"gpu1": "refused", "gpu5": "refused", "gpu2": "unreachable"},
    )  # fmt: skip
    buf = io.StringIO()
    PlainProgress(buf).rollout_started(7, rplan, resumed=False)
    assert (
        buf.getvalue()
        .rstrip()
        .endswith(
            "starting rollout 7: 2 waves, 2 hosts (not in any wave: 2 refused, 1 unreachable)"
        )
    )
