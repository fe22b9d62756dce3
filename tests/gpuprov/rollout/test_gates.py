"""Which built-in gate checks fail, on parsed host states (no host needed)."""

from __future__ import annotations

from gpuprov.facts.host_state import HostStateData, NvidiaSmiState
from gpuprov.inventory.model import DriverPin, Host, SSHSettings, Stack
from gpuprov.rollout.gates import GateCommand, builtin_failures, stack_installed


def gpu_host(dcgm: bool = False) -> Host:
    stack = Stack(driver=DriverPin("580", "580.95.05", "auto"), cuda=("12.8",), dcgm=dcgm)
    return Host("g1", "10.0.0.1", "gpu", "gpu", SSHSettings(), stack, "hgx-h100-8")


def test_no_driver_yet_nothing_for_nvidia_smi_to_judge():
    state = HostStateData()
    assert not stack_installed(state)
    assert builtin_failures(gpu_host(), ["nvidia-smi"], state, None) == []


def test_driver_installed_but_nvidia_smi_broken_fails():
    mismatch = "Failed to initialize NVML: Driver/library version mismatch"
    state = HostStateData(nvidia_smi=NvidiaSmiState(True, 18, None, mismatch))
    [failure] = builtin_failures(gpu_host(), ["nvidia-smi"], state, None)
    assert failure.startswith("nvidia-smi: nvidia-smi: Driver/library version mismatch")


def test_dcgm_missing_and_container_fail_closed():
    from gpuprov.rollout.gates import CommandOutcome

    failures = builtin_failures(
        gpu_host(dcgm=True), ["dcgm-diag", "container"], HostStateData(), CommandOutcome(127, "")
    )
    assert failures[0] == "dcgm-diag: dcgmi is not installed"
    assert failures[1].startswith("container: ")


def test_gate_command_reports_exit_status_and_output():
    import subprocess

    script = GateCommand().command("echo out; echo err >&2; exit 3", 5)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    outcome = GateCommand().process(proc.stdout.splitlines())
    assert (outcome.rc, outcome.output) == (3, "out\nerr")
    script = GateCommand().command("sleep 5", 1)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert GateCommand().process(proc.stdout.splitlines()).rc == 124
