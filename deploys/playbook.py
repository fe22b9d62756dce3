"""Which deploys `plan` and `apply` run, in order. One list, so plan and apply can never
disagree (an op's identity is its position in the host's sequence)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpuprov.deploys.steps import StepSelection


def default_deploys(steps: StepSelection | None = None) -> list[Callable[..., Any]]:
    """`steps`: the runbook steps to run (`--only`/`--skip`; deploys/steps.py); all when None."""
    # Imported here: deploys import pyinfra's operation modules, which is not free.
    # gpu_node = preflight, then on GPU hosts the whole stack (deploys/gpu_node.py).
    # mirror_server: on `role: mirror` hosts only (no op elsewhere), after preflight;
    # `gpuprov apply` runs those hosts before any GPU wave (cli/apply/staged.py).
    from gpuprov.deploys.gpu_node import gpu_node
    from gpuprov.deploys.mirror_server import mirror_server

    if steps is None or steps.everything:
        return [gpu_node, mirror_server]
    return [partial(gpu_node, steps=steps), mirror_server]
