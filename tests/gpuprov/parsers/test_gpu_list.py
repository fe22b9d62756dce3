"""`nvidia-smi -L` on real captures (a MIG host, an 8-GPU A100 host) and what a container
run adds around it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuprov.parsers import ParseError
from gpuprov.parsers.gpu_list import parse_gpu_list


def list_block(capture: Path) -> str:
    """The output under the capture's `# $ nvidia-smi -L` header."""
    lines = capture.read_text().splitlines()
    start = lines.index("# $ nvidia-smi -L") + 2
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("####"))
    return "\n".join(lines[start:end])


def test_mig_capture(captures: Path) -> None:
    text = list_block(captures / "nvgpuexp_capture__linux-x86_64__nvidia-h100-mig__590.48.01.txt")
    assert "MIG 3g.40gb" in text
    [gpu] = parse_gpu_list(text)
    assert (gpu.index, gpu.name) == (0, "NVIDIA H100 80GB HBM3")
    assert gpu.uuid == "GPU-00000000-0000-0000-0000-000000000000"


def test_eight_gpus_between_other_lines(captures: Path) -> None:
    # nvlink -s output: each GPU line followed by its links, which are not GPU lines.
    gpus = parse_gpu_list((captures / "gpud_a100-sxm4-80gb_nvlink-status.txt").read_text())
    assert [g.index for g in gpus] == list(range(8))
    assert {g.name for g in gpus} == {"NVIDIA A100-SXM4-80GB"}


def test_runtime_messages_around_the_list_are_skipped(captures: Path) -> None:
    text = list_block(captures / "nvgpuexp_capture__linux-x86_64__nvidia-h200__590.48.01.txt")
    pulled = (
        "Unable to find image '10.0.0.5:5000/gpuprov/verify@sha256:ab' locally\n"
        "10.0.0.5:5000/gpuprov/verify@sha256:ab: Pulling from gpuprov/verify\n" + text
    )
    assert parse_gpu_list(pulled) == parse_gpu_list(text) != []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("GPU 0: NVIDIA H100 80GB HBM3\n", "not a GPU line"),
        ("GPU 0: A (UUID: GPU-12345678)\nGPU 2: A (UUID: GPU-12345679)\n", "not 0..1"),
    ],
)
def test_other_shapes_are_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_gpu_list(text)


def test_nothing_listed_is_empty() -> None:
    assert parse_gpu_list("No devices were found\n") == []
