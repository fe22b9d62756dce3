from __future__ import annotations

import pytest

from gpuprov.parsers import ParseError
from gpuprov.parsers.dcgmi_diag import parse_dcgmi_diag

NAME = "azhpc-doc_h200_8gpu_dcgmi-diag-r1_dcgm3.1.8_550.127.08.txt"


def test_h200_persistence_failure(captures):
    d = parse_dcgmi_diag((captures / NAME).read_text())
    assert d.metadata["DCGM Version"] == "3.1.8"
    assert d.metadata["Driver Version Detected"] == "550.127.08"
    assert [t.name for t in d.tests][:3] == ["Denylist", "NVML Library", "CUDA Main Library"]
    assert len(d.tests) == 9 and {t.section for t in d.tests} == {"Deployment"}
    assert not d.passed
    (fail,) = d.failed
    assert fail.name == "Persistence Mode"
    # The wrapped Error cell is joined back exactly, mid-word breaks included.
    assert fail.details.startswith("Persistence mode for GPU 0 is currently disabled. The DCGM")
    # Five complete messages (GPU 5's is cut off by dcgmi), each joined across wrap points.
    assert fail.details.count("The DCGM diagnostic requires peristence mode to be enabled.") == 5
    assert "  " not in fail.details and "peristencemode" not in fail.details
    assert 'running "nvidia-smi -i <gpuId> -pm 1 " as root.' in fail.details


def test_all_pass(captures):
    text = (captures / NAME).read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("|                           |")]
    lines = [ln for ln in lines if not ln.startswith("| Error")]
    d = parse_dcgmi_diag("\n".join(lines).replace("| Fail ", "| Pass "))
    assert d.passed and not d.failed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no diagnostic results table"),
        ("Error: unable to establish a connection to the host engine", "no diagnostic results"),
        ("| Denylist | Maybe |", "not one of"),
    ],
)
def test_garbage(text, message):
    with pytest.raises(ParseError, match=message):
        parse_dcgmi_diag(text)
