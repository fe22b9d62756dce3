"""docs/engine.md: a no-op apply reads each host's state in about one round trip. Counted here on
pyinfra's fake connector: every command the whole GPU node deploy (preflight + stack)
sends to a converged host while planning, which must be exactly one (the NodeFacts
read), and that preflight and the stack shared it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from plan_harness import changes, gpu_host, plan  # noqa: E402
from test_gpu_stack_plan import converged_extras, converged_state  # noqa: E402


def converged_identity(me) -> str:
    from gpuprov.deploys.preflight import identity_json

    from gpuprov.operations.files import sha256

    return f"644\n{sha256(identity_json(me, None))}"


def test_converged_node_costs_one_round_trip(sent: list[str]) -> None:
    from gpuprov.deploys.gpu_node import gpu_node

    me = gpu_host(gpuprov_preflight_ignore=["gpus"])  # no lspci in the canned facts
    ops = plan(
        me,
        converged_state(),
        converged_extras(),
        deploy=gpu_node,
        identity=converged_identity(me),
    )
    assert changes(ops) == [], [(o.name, o.commands) for o in changes(ops)]
    assert len(sent) == 1, sent
    assert "gpuprov HostState" in sent[0] and "containerd-nvidia" in sent[0]


def test_identity_file_change_is_still_one_read(sent: list[str]) -> None:
    from gpuprov.deploys.gpu_node import gpu_node

    me = gpu_host(gpuprov_preflight_ignore=["gpus"])
    ops = plan(me, converged_state(), converged_extras(), deploy=gpu_node)  # host.json absent
    (changed,) = changes(ops)
    assert changed.name.endswith("Record the host's identity in /etc/gpuprov/host.json")
    assert len(sent) == 1, sent
