from __future__ import annotations

import re

import pytest
from nvidia_smi_text import parse_fabric_blocks, parse_nvidia_smi_text  # tests/support

from gpuprov.parsers import ParseError

GPUD = [
    ("gpud_h100-80gb-hbm3_8gpu_q_535.161.08.txt", "535.161.08"),
    ("gpud_h100-80gb-hbm3_8gpu_q_535.183.01.txt", "535.183.01"),
]


@pytest.mark.parametrize(("name", "driver"), GPUD)
def test_gpud_hgx_h100_8gpu(captures, name, driver):
    r = parse_nvidia_smi_text((captures / name).read_text())
    assert (r.driver_version, r.cuda_version, r.attached_gpus) == (driver, "12.2", 8)
    assert [g.index for g in r.gpus] == list(range(8))
    assert {g.product_name for g in r.gpus} == {"NVIDIA H100 80GB HBM3"}
    assert {g.pci_device_id for g in r.gpus} == {"10de:2330"}
    assert len({g.uuid for g in r.gpus}) == 8 and len({g.pci_bus_id for g in r.gpus}) == 8
    for g in r.gpus:
        assert g.persistence_mode is True and g.mig_mode is False and g.mig_devices == 0
        assert g.memory_total_mib == 81559
        assert g.ecc.volatile_uncorrectable == 0 and g.ecc.aggregate_uncorrectable == 0
        assert (g.remapped_rows.pending, g.remapped_rows.failure) == (False, False)
        assert (g.fabric.state, g.fabric.status) == ("Completed", "Success")


def test_gpud_first_gpu_identity(captures):
    g = parse_nvidia_smi_text((captures / GPUD[0][0]).read_text()).gpus[0]
    assert g.pci_bus_id == "00000000:19:00.0"
    assert g.uuid == "GPU-ee7954ec-da95-fd7a-ddfd-c6b32cc2f8aa"
    assert g.serial == "1650124031592"


def test_llmaction_h800_single_gpu_of_eight(captures):
    r = parse_nvidia_smi_text(
        (captures / "llmaction_h800_8gpu-host_q-i0_525.105.17.txt").read_text()
    )
    assert (r.driver_version, r.attached_gpus, len(r.gpus)) == ("525.105.17", 8, 1)
    g = r.gpus[0]
    assert g.product_name == "NVIDIA H800" and g.pci_device_id == "10de:2324"
    assert g.ecc.volatile_uncorrectable is None  # ECC disabled: every counter N/A
    assert g.remapped_rows.uncorrectable == 0
    assert g.fabric.state == "Completed"


@pytest.mark.parametrize("which", ["nvidia-h100-80gb-hbm3", "nvidia-h100-mig", "nvidia-h200"])
@pytest.mark.parametrize("nth", [0, 1])  # idle and under load
def test_nvgpuexp_590(nvgpuexp, section, which, nth):
    r = parse_nvidia_smi_text(section(nvgpuexp[which], "nvidia-smi -q", nth))
    assert (r.driver_version, r.cuda_version, len(r.gpus)) == ("590.48.01", "13.1", 1)
    g = r.gpus[0]
    expected = "NVIDIA H200" if which == "nvidia-h200" else "NVIDIA H100 80GB HBM3"
    assert g.product_name == expected
    assert g.ecc.volatile_uncorrectable == 0  # parity + SEC-DED + DRAM, all zero
    assert g.fabric is not None and g.fabric.state is not None
    if which == "nvidia-h100-mig":
        assert g.mig_mode is True and g.mig_devices >= 2
        assert g.remapped_rows.pending is None  # "Remapped Rows : N/A" with MIG on
    else:
        assert g.mig_mode is False and g.mig_devices == 0
        assert g.remapped_rows.pending is False


def test_zenn_fabric_grep(captures):
    done = parse_fabric_blocks(
        (captures / "zenn-orimanabu_aws-p5-h100_q-fabric-grep_completed_570.133.20.txt").read_text()
    )
    waiting = parse_fabric_blocks(
        (
            captures / "zenn-orimanabu_aws-p5-h100_q-fabric-grep_in-progress_570.133.20.txt"
        ).read_text()
    )
    assert [(f.state, f.status) for f in done] == [("Completed", "Success")]
    assert [(f.state, f.status) for f in waiting] == [("In Progress", None)]


def test_fabric_blocks_of_full_output(captures):
    text = (captures / GPUD[0][0]).read_text()
    assert [f.state for f in parse_fabric_blocks(text)] == ["Completed"] * 8


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: "", "no 'Driver Version'"),
        (
            lambda t: "Failed to initialize NVML: Driver/library version mismatch",
            "no 'Driver Version'",
        ),
        (
            lambda t: t.replace(
                "Attached GPUs                             : 8", "Attached GPUs : 2"
            ),
            "is 2 but 8",
        ),
        (lambda t: t.split("GPU 00000000:19:00.0")[0], "no 'GPU <bus id>' section"),
        (lambda t: t.replace("GPU UUID", "GPU UUIDs"), "missing 'Product Name' or 'GPU UUID'"),
        (
            lambda t: t.replace("Pending                           : No", "Pending : Perhaps", 1),
            "expected Enabled/Disabled",
        ),
        (
            lambda t: re.sub(
                r"DRAM Uncorrectable( +): 0", r"DRAM Uncorrectable\1: lots", t, count=1
            ),
            "expected a number",
        ),
    ],
)
def test_garbage_raises(captures, edit, message):
    with pytest.raises(ParseError, match=message):
        parse_nvidia_smi_text(edit((captures / GPUD[0][0]).read_text()))
