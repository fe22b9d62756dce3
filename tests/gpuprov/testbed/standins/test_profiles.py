"""Simulated GPU profiles and how they reach a host."""

from __future__ import annotations

import json
import subprocess

import pytest

from gpuprov.errors import InputError
from gpuprov.testbed.standins import PROFILE_PATH, PROFILES, install_sim_profile, render_profile


def test_named_profiles():
    assert {"hgx-h100-8", "hgx-a100-8", "h100-pcie", "hgx-b200-8"} <= set(PROFILES)
    h100 = render_profile("hgx-h100-8")
    assert (h100["gpu_model"], h100["pci_device"], h100["gpu_count"], h100["nvswitch_count"]) == (
        "NVIDIA H100 80GB HBM3",
        "10de:2330",
        8,
        4,
    )
    assert h100["secure_boot"] is False and h100["faults"] == {}
    assert render_profile("h100-pcie")["nvswitch_count"] == 0
    assert render_profile("hgx-b200-8")["open_modules_required"] is True


def test_faults_and_errors():
    prof = render_profile(
        "hgx-a100-8",
        secure_boot=True,
        missing_gpus=1,
        ecc_uncorrectable={2: 3},
        fabric_in_progress=True,
    )
    assert prof["faults"] == {
        "ecc_uncorrectable": {"2": 3},
        "fabric_in_progress": True,
        "missing_gpus": 1,
    }
    assert prof["secure_boot"] is True
    assert PROFILES["hgx-a100-8"].get("faults") is None  # the table is not mutated
    with pytest.raises(InputError, match="unknown GPU sim profile 'hgx-h300-8'"):
        render_profile("hgx-h300-8")
    with pytest.raises(InputError, match="unknown fault"):
        render_profile("hgx-h100-8", gpu_on_fire=True)


def test_install_into_root_and_through_a_command_runner(tmp_path):
    prof = render_profile("hgx-h100-8", retired_pages_pending=True)
    install_sim_profile(tmp_path / "a", prof)
    assert json.loads((tmp_path / "a" / PROFILE_PATH.lstrip("/")).read_text()) == prof

    # A command runner (here: sh with / rewritten to a directory) gets one shell command.
    root = tmp_path / "b"
    root.mkdir()

    def run(command: str) -> None:
        subprocess.run(["sh", "-c", command.replace("/etc/", f"{root}/etc/")], check=True)

    install_sim_profile(run, prof)
    assert json.loads((root / PROFILE_PATH.lstrip("/")).read_text()) == prof


def test_a100_topology_is_nv12(host):
    host.extract("nvidia-utils-570", "570.133.20")
    host.profile("hgx-a100-8")
    host.load_module("570.133.20")
    topo = host.run("/usr/bin/nvidia-smi", "topo", "-m").stdout.splitlines()
    assert topo[4].split("\t")[1:9] == ["NV12"] * 3 + [" X "] + ["NV12"] * 4
    pcie = render_profile("h100-pcie")
    assert pcie["gpu_count"] == 2
