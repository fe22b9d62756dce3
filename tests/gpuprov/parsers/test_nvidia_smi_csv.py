from __future__ import annotations

import pytest

from gpuprov.parsers import ParseError
from gpuprov.parsers.nvidia_smi_csv import convert, parse_query_csv


@pytest.mark.parametrize("which", ["nvidia-h100-80gb-hbm3", "nvidia-h100-mig", "nvidia-h200"])
def test_query_gpu_csv(nvgpuexp, section, which):
    rows = parse_query_csv(section(nvgpuexp[which], "nvidia-smi --query-gpu"))
    assert len(rows) == 1
    row = rows[0]
    assert len(row) > 200  # every queried field is a column
    assert row["driver_version"] == "590.48.01"
    assert row["count"] == 1 and row["index"] == 0
    assert row["name"] in ("NVIDIA H100 80GB HBM3", "NVIDIA H200")
    assert row["pci.device_id"] in ("0x233010DE", "0x233510DE")
    assert isinstance(row["memory.total"], int) and row["memory.total"] > 80000  # "81559 MiB"
    assert row["vgpu_driver_capability.heterogenous_multivGPU"] is None  # "[N/A]"
    assert row["retired_pages.pending"] is None
    assert row["remapped_rows.pending"] == (None if which == "nvidia-h100-mig" else "No")
    assert row["ecc.errors.uncorrected.volatile.total"] == 0
    assert isinstance(row["power.draw"], float)
    assert row["fabric.state"] in ("Completed", "In Progress", None)
    assert row["mig.mode.current"] == ("Enabled" if which == "nvidia-h100-mig" else "Disabled")


def test_noheader_nounits(nvgpuexp, section):
    text = section(nvgpuexp["nvidia-h100-80gb-hbm3"], "nvidia-smi --query-gpu")
    header, data = text.strip().splitlines()[:2]
    fields = [f.split(" [")[0] for f in header.split(", ")]
    with_header = parse_query_csv(text)[0]
    without = parse_query_csv(data + "\n", fields=fields)[0]
    assert without == with_header


def test_convert():
    assert convert("[Not Supported]") is None
    assert convert(" [Requested functionality has been deprecated]") is None
    assert convert("81559") == 81559 and convert("81559 MiB") == 81559
    assert convert("69.85 W") == 69.85 and convert("0 %") == 0
    assert convert("0x0000") == "0x0000" and convert("Not Active") == "Not Active"


def test_garbage():
    with pytest.raises(ParseError, match="empty output"):
        parse_query_csv("")
    with pytest.raises(ParseError, match="not a field header"):
        parse_query_csv("Failed to initialize NVML: Unknown Error\n")
    with pytest.raises(ParseError, match="line 2: 1 values for 2 fields"):
        parse_query_csv("index, name\n0\n")
