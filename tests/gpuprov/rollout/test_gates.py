"""Which built-in gate checks fail, on parsed host states (no host needed), and the gate
command's exit status and timeout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploys"))

from hoststate import host_state_output  # noqa: E402
from plan_harness import gpu_host  # noqa: E402

from gpuprov.facts.host_state import HostStateData, parse_host_state  # noqa: E402
from gpuprov.rollout.gates import GateCommand, builtin_failures, stack_installed  # noqa: E402
from gpuprov.verify.node import ProbeData  # noqa: E402


def driver_installed() -> HostStateData:
    pkgs = {"nvidia-driver-580-open": "580.95.05-1", "nvidia-fabricmanager": "580.95.05-1"}
    return parse_host_state(host_state_output("debian12", packages=pkgs, module="580.95.05"))


def test_no_driver_yet_nothing_to_judge():
    state = parse_host_state(host_state_output("debian12"))
    assert not stack_installed(state)
    gates = ["nvidia-smi", "dcgm-diag", "container"]
    assert builtin_failures(gpu_host(), gates, state, None) == []


def test_each_gate_reports_only_its_own_checks():
    state = driver_installed()
    assert stack_installed(state)
    smi = builtin_failures(gpu_host(), ["nvidia-smi"], state, None)
    assert smi and all(f.startswith("nvidia-smi: ") for f in smi)
    assert "nvidia-smi: nvidia-smi: nvidia-smi is not installed (driver missing?)" in smi
    dcgm = builtin_failures(gpu_host(), ["dcgm-diag"], state, ProbeData())
    assert dcgm == ["dcgm-diag: dcgm-diag: dcgmi is not installed"]
    # a gate the inventory asks for that cannot run fails (static checks say so earlier)
    [off] = builtin_failures(gpu_host(dcgm=False), ["dcgm-diag"], state, ProbeData())
    assert off == "dcgm-diag: dcgm-diag: not checked: dcgm: false in the stack"


def test_container_gate_not_checked_fails():
    failures = builtin_failures(gpu_host(), ["container"], driver_installed(), ProbeData())
    assert any(f.startswith("container: cdi-spec: no CDI spec") for f in failures)
    assert any(f.startswith("container: container: not checked: no test image") for f in failures)


def test_gate_command_reports_exit_status_and_output():
    script = GateCommand().command("echo out; echo err >&2; exit 3", 5)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    outcome = GateCommand().process(proc.stdout.splitlines())
    assert (outcome.rc, outcome.output) == (3, "out\nerr")
    script = GateCommand().command("sleep 5", 1)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert GateCommand().process(proc.stdout.splitlines()).rc == 124
