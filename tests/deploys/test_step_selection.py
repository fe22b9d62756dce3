"""`plan|apply --only/--skip`: the GPU stack planned against given host facts with a step
selection (no host, nothing run). A CUDA-only rollout on a host whose driver is behind
the pin plans the CUDA change and nothing of the driver: no package, no reboot."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gpuprov.deploys.gpu_node import gpu_stack  # noqa: E402
from gpuprov.deploys.steps import STEPS, parse  # noqa: E402
from plan_harness import changes, gpu_host, plan  # noqa: E402
from test_gpu_stack_plan import (  # noqa: E402
    CONVERGED_PACKAGES,
    converged_extras,
    converged_state,
)

from gpuprov.engine.refusal import HostRefused  # noqa: E402
from gpuprov.errors import InputError  # noqa: E402

OLD = "580.82.07-1"  # the host's driver: one update behind the inventory's 580.95.05


def behind_state(**overrides) -> str:
    """Driver 580.82.07 installed and loaded; CUDA 12.8 only (the inventory adds 13.0)."""
    pkgs = {
        **{k: (OLD if v == "580.95.05-1" else v) for k, v in CONVERGED_PACKAGES.items()},
    }
    pkgs.pop("cuda-toolkit-13-0")
    pkgs.pop("datacenter-gpu-manager-4-cuda13")
    pkgs["datacenter-gpu-manager-4-cuda12"] = "1:4.4.1-1"
    values = dict(
        packages=pkgs, held=tuple(pkgs), module="580.82.07", cuda_link="/usr/local/cuda-12.8"
    )
    values.update(overrides)
    return converged_state(**values)


def selected(*, only: tuple[str, ...] = (), skip: tuple[str, ...] = ()):
    return partial(gpu_stack, steps=parse(only, skip))


def all_commands(ops) -> str:
    return "\n".join(c for op in ops for c in op.commands)


def test_full_plan_touches_the_driver_and_reboots() -> None:
    """The control: without a selection this host gets the driver and a reboot."""
    ops = plan(gpu_host(), behind_state(), converged_extras(cdi_driver="580.82.07"))
    text = all_commands(ops)
    assert "nvidia-driver-580-open=580.95.05-1" in text and "reboot" in text


def test_cuda_only_never_touches_the_driver_or_reboots() -> None:
    ops = plan(
        gpu_host(), behind_state(), converged_extras(cdi_driver="580.82.07"),
        deploy=selected(only=("cuda",)),
    )  # fmt: skip
    text = all_commands(ops)
    assert "cuda-toolkit-13-0" in text  # the CUDA change is planned
    assert "nvidia-driver" not in text and "nvidia-kernel" not in text
    assert "reboot" not in text and "persistenced" not in text and "fabricmanager" not in text
    assert "datacenter-gpu-manager" not in text  # dcgm not selected either
    for step in STEPS:
        if step != "cuda":
            op = next(o for o in ops if o.name.endswith(f"| {step} (not selected)"))
            assert op.commands == [] and op.noop == "not selected (--only cuda)"
    changed = {o.name.split(" | ")[-1] for o in changes(ops)}
    assert "CUDA toolkits 12.8, 13.0 side by side, held" in changed
    assert changed <= {
        "CUDA toolkits 12.8, 13.0 side by side, held", "/usr/local/cuda -> CUDA 13.0",
        "CUDA on PATH and LD_LIBRARY_PATH (lib64) for login shells",
    }  # fmt: skip


def test_same_op_sequence_on_every_host_of_a_selection() -> None:
    """NVSwitch and PCIe hosts, converged or not: one sequence (pyinfra ops by position)."""
    sel = selected(skip=("dcgm", "container"))
    a = plan(gpu_host(), converged_state(), converged_extras(), deploy=sel)
    b = plan(gpu_host(profile="h100-pcie"), behind_state(), converged_extras(), deploy=sel)
    assert len(a) == len(b)
    assert [o.name.split(" | ")[-1] for o in a if "not selected" in o.name] == [
        "container (not selected)", "dcgm (not selected)"]  # fmt: skip


def test_fabricmanager_without_driver_refused_where_the_driver_differs() -> None:
    with pytest.raises(HostRefused) as info:
        plan(
            gpu_host(), behind_state(), converged_extras(), deploy=selected(only=("fabricmanager",))
        )
    text = str(info.value)
    assert "--only fabricmanager: fabric manager must run at the driver's exact version" in text
    assert "this host has driver 580.82.07 where the inventory pins 580.95.05" in text
    assert "add the driver step (--only driver,fabricmanager)" in text


def test_fabricmanager_without_driver_allowed_where_the_driver_matches() -> None:
    ops = plan(gpu_host(), converged_state(services={}), converged_extras(),
               deploy=selected(only=("fabricmanager",)))  # fmt: skip
    assert [o.commands for o in changes(ops)] == [
        [
            "systemctl enable nvidia-fabricmanager.service",
            "systemctl start nvidia-fabricmanager.service",
        ]
    ] or all("fabricmanager" in c for o in changes(ops) for c in o.commands)
    assert "nvidia-driver" not in all_commands(ops)


def test_fabricmanager_with_driver_is_not_refused() -> None:
    ops = plan(
        gpu_host(),
        behind_state(),
        converged_extras(),
        deploy=selected(only=("driver", "fabricmanager")),
    )
    assert "nvidia-fabricmanager=580.95.05-1" in all_commands(ops)


def test_cuda_only_refused_when_the_installed_driver_is_too_old() -> None:
    state = behind_state(
        packages={
            "nvidia-driver-580-open": "570.133.20-1",
            "nvidia-kernel-open-580": "570.133.20-1",
        },
        module="570.133.20",
    )
    with pytest.raises(HostRefused) as info:
        plan(gpu_host(), state, converged_extras(), deploy=selected(only=("cuda",)))
    assert "CUDA 13.0 needs driver 580.65.06 or newer; this host has 570.133.20" in str(info.value)


def test_preflight_only_is_refused_and_names_are_checked() -> None:
    with pytest.raises(InputError, match="--only cdua: not a step; did you mean 'cuda'"):
        parse(("cdua",))
    with pytest.raises(InputError, match="leave no step"):
        parse(("cuda",), ("cuda",))
    assert parse(("cuda,dcgm",), ()).steps == ("cuda", "dcgm")
    assert parse((), ("driver", "nouveau")).flag == "--skip nouveau,driver"
    assert parse().everything
