from __future__ import annotations

import pytest

from gpuprov.parsers import ParseError
from gpuprov.parsers.topo import parse_topo_matrix


def test_topo_a100_8gpu_nv12_all_to_all(captures):
    t = parse_topo_matrix(
        (captures / "oyanghd_a100-sxm4-40gb_8gpu_topo-m_525.105.17.txt").read_text()
    )
    assert t.gpus == tuple(f"GPU{i}" for i in range(8))
    assert len(t.devices) == 18  # 8 GPUs + 10 NICs
    assert t.nvlink_all_to_all() and t.min_gpu_nvlinks() == 12
    assert t.matrix["GPU0"]["NIC0"] == "PXB" and t.matrix["NIC8"]["NIC9"] == "PIX"
    assert (t.cpu_affinity["GPU0"], t.numa_affinity["GPU0"]) == ("48-63,176-191", "3")


def test_topo_single_gpu_with_escape_codes(nvgpuexp, section):
    t = parse_topo_matrix(section(nvgpuexp["nvidia-h100-80gb-hbm3"], "nvidia-smi topo -m"))
    assert t.gpus == ("GPU0",)
    assert not t.nvlink_all_to_all()  # one GPU: nothing to link
    assert t.cpu_affinity["GPU0"] == "0-19"


def test_topo_broken_link_not_all_to_all(captures):
    text = (captures / "oyanghd_a100-sxm4-40gb_8gpu_topo-m_525.105.17.txt").read_text()
    lines = text.splitlines()
    lines[4] = lines[4].replace("NV12", "SYS", 1)  # GPU3 loses its NVLink to GPU0
    t = parse_topo_matrix("\n".join(lines))
    assert not t.nvlink_all_to_all() and t.min_gpu_nvlinks() == 0


@pytest.mark.parametrize("text", ["", "NVIDIA-SMI has failed", "\tGPU0\tGPU1\nGPU0\t X \tNV4\n"])
def test_topo_garbage(text):
    with pytest.raises(ParseError):
        parse_topo_matrix(text)
