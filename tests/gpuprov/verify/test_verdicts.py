"""Verdicts on the real captures, against SystemProfiles built here (the YAML data is
another helper's)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
from nvidia_smi_text import parse_fabric_blocks, parse_nvidia_smi_text  # tests/support

from gpuprov.facts.host_state import SCRIPT, HostStateData, parse_host_state
from gpuprov.parsers.dcgmi_diag import parse_dcgmi_diag
from gpuprov.parsers.lspci import parse_lspci
from gpuprov.parsers.nvidia_smi_xml import parse_nvidia_smi_xml
from gpuprov.tables import SystemProfile
from gpuprov.verify.verdicts import pci_checks, verdict

HGX_H100_8 = SystemProfile(
    name="hgx-h100-8",
    description="HGX H100 8-GPU (SXM5 80GB, NVSwitch)",
    gpu_model="NVIDIA H100 80GB HBM3",
    gpu_pci_ids=("10de:2330",),
    gpu_count=8,
    nvswitch=True,
    nvswitch_pci_ids=("10de:22a3",),
    nvswitch_count=4,
    min_driver_branch=525,
    open_modules="recommended",
)
A100_40_PCIE_VM = SystemProfile(
    name="a100-40gb-1",
    description="one A100 SXM4 40GB passed through to a VM",
    gpu_model="NVIDIA A100-SXM4-40GB",
    gpu_pci_ids=("10de:20b0",),
    gpu_count=1,
    nvswitch=False,
)
GPUD = "gpud_h100-80gb-hbm3_8gpu_q_535.161.08.txt"


def names(v, ok=None):
    return [c.name for c in v.checks if ok is None or c.ok == ok]


@pytest.fixture
def hgx(captures):
    return parse_nvidia_smi_text((captures / GPUD).read_text())


def test_healthy_hgx_h100(hgx):
    v = verdict(hgx, HGX_H100_8, "535.161.08")
    assert v.ok, v.summary()
    assert names(v) == [
        "nvidia-smi",
        "gpu-count",
        "gpu-model",
        "driver-version",
        "ecc",
        "memory-remap",
        "fabric",
    ]


def test_second_hgx_capture_healthy(captures):
    r = parse_nvidia_smi_text((captures / "gpud_h100-80gb-hbm3_8gpu_q_535.183.01.txt").read_text())
    assert verdict(r, HGX_H100_8, "535.183.01").ok


def test_wrong_driver(hgx):
    v = verdict(hgx, HGX_H100_8, "580.95.05")
    assert names(v, ok=False) == ["driver-version"]
    assert "driver 535.161.08, pinned 580.95.05" in v.failed[0].detail


def test_wrong_count_and_model(hgx):
    profile = dataclasses.replace(HGX_H100_8, gpu_count=4, gpu_model="NVIDIA H200")
    v = verdict(hgx, profile, "535.161.08")
    assert names(v, ok=False) == ["gpu-count", "gpu-model"]
    assert "8 GPUs" in v.failed[0].detail and "'NVIDIA H200'" in v.failed[1].detail


def test_missing_gpu(hgx):
    one_lost = dataclasses.replace(hgx, gpus=hgx.gpus[:7], attached_gpus=7)
    v = verdict(one_lost, HGX_H100_8, "535.161.08")
    assert names(v, ok=False) == ["gpu-count"]


def test_fabric_in_progress_fails_naming_fabric_manager(hgx, captures):
    (waiting,) = parse_fabric_blocks(
        (
            captures / "zenn-orimanabu_aws-p5-h100_q-fabric-grep_in-progress_570.133.20.txt"
        ).read_text()
    )
    stuck = dataclasses.replace(
        hgx, gpus=tuple(dataclasses.replace(g, fabric=waiting) for g in hgx.gpus)
    )
    v = verdict(stuck, HGX_H100_8, "535.161.08")
    assert names(v, ok=False) == ["fabric"]
    assert "In Progress" in v.failed[0].detail and "fabricmanager" in v.failed[0].detail
    # Not an NVSwitch system: fabric is not checked.
    pcie = dataclasses.replace(HGX_H100_8, nvswitch=False)
    assert verdict(stuck, pcie, "535.161.08").ok


def test_fabric_completed_capture(hgx, captures):
    (done,) = parse_fabric_blocks(
        (captures / "zenn-orimanabu_aws-p5-h100_q-fabric-grep_completed_570.133.20.txt").read_text()
    )
    ok = dataclasses.replace(hgx, gpus=tuple(dataclasses.replace(g, fabric=done) for g in hgx.gpus))
    assert verdict(ok, HGX_H100_8, "535.161.08").ok


def test_ecc_and_remap_failures(hgx):
    g0, g1 = hgx.gpus[0], hgx.gpus[1]
    bad0 = dataclasses.replace(g0, ecc=dataclasses.replace(g0.ecc, volatile_dram_uncorrectable=2))
    bad1 = dataclasses.replace(
        g1, remapped_rows=dataclasses.replace(g1.remapped_rows, pending=True, failure=True)
    )
    r = dataclasses.replace(hgx, gpus=(bad0, bad1, *hgx.gpus[2:]))
    v = verdict(r, HGX_H100_8, "535.161.08")
    assert names(v, ok=False) == ["ecc", "memory-remap"]
    assert "GPU 0 (00000000:19:00.0): 2" in v.failed[0].detail
    assert "row remapping pending" in v.failed[1].detail and "failure" in v.failed[1].detail


def test_dcgm_failure_reported(hgx, captures):
    dcgm = parse_dcgmi_diag(
        (captures / "azhpc-doc_h200_8gpu_dcgmi-diag-r1_dcgm3.1.8_550.127.08.txt").read_text()
    )
    v = verdict(hgx, HGX_H100_8, "535.161.08", dcgm=dcgm)
    assert names(v, ok=False) == ["dcgm-diag"]
    assert (
        "Persistence Mode (Persistence mode for GPU 0 is currently disabled" in v.failed[0].detail
    )


def test_mig_passthrough_vm(captures):
    r = parse_nvidia_smi_xml(
        (captures / "netdata_a100-sxm4-40gb_1gpu_mig_passthrough_510.47.03.xml").read_text()
    )
    v = verdict(r, A100_40_PCIE_VM, "510.47.03")
    assert v.ok, v.summary()
    ecc = next(c for c in v.checks if c.name == "ecc")
    assert "do not report volatile ECC" in ecc.detail


def test_partial_report_is_not_a_full_count(captures):
    # telegraf kept one GPU of four: the count check must not pass on it.
    r = parse_nvidia_smi_xml(
        (captures / "telegraf_a100-sxm4-80gb_4gpu_mig_535.54.03.xml").read_text()
    )
    profile = dataclasses.replace(A100_40_PCIE_VM, gpu_model="NVIDIA A100-SXM4-80GB", gpu_count=4)
    v = verdict(r, profile, "535.54.03")
    assert names(v, ok=False) == ["gpu-count"] and "1 of 4" in v.failed[0].detail


def _host_state(tmp_path: Path, nvidia_smi_body: str | None) -> HostStateData:
    env = dict(os.environ)
    if nvidia_smi_body is not None:
        tool = tmp_path / "nvidia-smi"
        tool.write_text("#!/bin/sh\n" + nvidia_smi_body)
        tool.chmod(0o755)
        env["PATH"] = f"{tmp_path}:{env['PATH']}"
    out = subprocess.run(
        ["dash", "-c", SCRIPT], capture_output=True, text=True, env=env, check=True
    )
    return parse_host_state(out.stdout)


def test_host_without_driver(tmp_path):
    v = verdict(_host_state(tmp_path, None), HGX_H100_8, "580.95.05")
    assert not v.ok and names(v) == ["nvidia-smi"]
    assert "not installed" in v.checks[0].detail


def test_host_with_version_mismatch(tmp_path):
    state = _host_state(
        tmp_path, "echo 'Failed to initialize NVML: Driver/library version mismatch' >&2\nexit 18\n"
    )
    v = verdict(state, HGX_H100_8, "580.95.05")
    assert names(v, ok=False) == ["nvidia-smi"]
    assert (
        "Driver/library version mismatch" in v.checks[0].detail and "reboot" in v.checks[0].detail
    )


def test_host_state_with_xml(tmp_path, captures):
    xml = captures / "netdata_a100-sxm4-40gb_1gpu_mig_passthrough_510.47.03.xml"
    v = verdict(_host_state(tmp_path, f'cat "{xml}"\n'), A100_40_PCIE_VM, "510.47.03")
    assert v.ok, v.summary()


def test_pci_checks_reconstructed_hgx():
    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "lspci" / "hgx-h100-8_lspci-nn.txt"
    devices = parse_lspci(fixture.read_text())
    checks = pci_checks(HostStateData(pci_devices=devices), HGX_H100_8)
    assert [(c.name, c.ok) for c in checks] == [("pci-gpus", True), ("pci-nvswitches", True)]
    missing_switch = [d for d in devices if d.slot != "e6:00.0"]
    checks = pci_checks(HostStateData(pci_devices=missing_switch), HGX_H100_8)
    assert [(c.name, c.ok) for c in checks] == [("pci-gpus", True), ("pci-nvswitches", False)]
    assert pci_checks(HostStateData(pci_devices=None), HGX_H100_8) == []


def test_pci_checks_this_machine_has_no_gpu(tmp_path):
    state = _host_state(tmp_path, None)
    checks = pci_checks(state, HGX_H100_8)
    if state.pci_devices is None:  # lspci not installed: nothing to say
        assert checks == []
    else:
        assert [(c.name, c.ok) for c in checks] == [("pci-gpus", False), ("pci-nvswitches", False)]
