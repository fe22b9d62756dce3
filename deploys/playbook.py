"""Which deploys `plan` and `apply` run, in order. One list, so plan and apply can never
disagree (an op's identity is its position in the host's sequence)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def default_deploys() -> list[Callable[..., Any]]:
    # Imported here: deploys import pyinfra's operation modules, which is not free.
    # gpu_node = preflight, then on GPU hosts the whole stack (deploys/gpu_node.py).
    from gpuprov.deploys.gpu_node import gpu_node

    return [gpu_node]
