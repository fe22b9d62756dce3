"""A scratch-root host (`gpuprov_root`, the engine tests on this machine) gets preflight's
identity file under its root and nothing else: neither the GPU stack nor the mirror role,
whose packages, users and services cannot be confined to a directory; and its mirror
state is not read. Both deploys ask the one predicate (gpuprov.facts.scratch_root);
`gpuprov_root: /` is the real root. Planned on pyinfra's fake connector."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from plan_harness import changes, gpu_host, mirror_host, plan  # noqa: E402
from test_gpu_stack_plan import converged_extras, converged_state  # noqa: E402

ROOT = "/var/tmp/scratch"
IDENTITY = "Record the host's identity in /etc/gpuprov/host.json"


def gpu_node_plan(**data: object):
    from gpuprov.deploys.gpu_node import gpu_node

    me = gpu_host(gpuprov_preflight_ignore=["gpus"])  # no lspci in the canned facts
    return plan(me, converged_state(), converged_extras(), deploy=gpu_node, **data)


def test_gpu_host_on_a_scratch_root_gets_preflight_only() -> None:
    ops = gpu_node_plan(gpuprov_root=ROOT + "/")
    (identity,) = changes(ops)
    assert identity.name.endswith(IDENTITY)
    assert any(f"{ROOT}/etc/gpuprov/host.json" in c for c in identity.commands)
    assert not any("GPU stack" in op.name for op in ops), [op.name for op in ops]


@pytest.mark.parametrize("root", [None, "/"])
def test_gpu_host_on_the_real_root_gets_the_stack(root: str | None) -> None:
    ops = gpu_node_plan(**({"gpuprov_root": root} if root else {}))
    assert any("GPU stack" in op.name for op in ops), [op.name for op in ops]


def test_mirror_host_on_a_scratch_root_gets_no_mirror_role(sent: list[str]) -> None:
    from gpuprov.deploys.gpu_node import gpu_node
    from gpuprov.deploys.mirror_server import mirror_server

    def both() -> None:
        gpu_node()  # preflight, as `gpuprov apply` runs it before the mirror role
        mirror_server()

    ops = plan(mirror_host(), converged_state(), deploy=both, gpuprov_root=ROOT)
    (identity,) = changes(ops)  # no refusal ("mirror state was not read"), no mirror op
    assert identity.name.endswith(IDENTITY)
    assert not any("Mirror host" in op.name for op in ops), [op.name for op in ops]
    assert len(sent) == 1 and "@@gpuprov:begin mirror" not in sent[0]
