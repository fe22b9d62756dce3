"""Helpers for tests reading the real captures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

_RULE = "#" * 80


def _capture_section(path: Path, title: str, nth: int = 0) -> str:
    """The body of the nth section whose "# $ COMMAND" line starts with `title` in an
    nvidia_gpu_exporter capture (sections are framed by lines of 80 '#')."""
    text = path.read_text()
    parts = re.split(rf"^{_RULE}\n((?:#[^\n]*\n)+?){_RULE}\n", text, flags=re.M)
    # parts = [preamble, frame1, body1, frame2, body2, ...]; a frame holds "# $ COMMAND".
    bodies = []
    for i in range(1, len(parts), 2):
        cmd = re.search(r"^# \$ (.*)$", parts[i], flags=re.M)
        if cmd and cmd.group(1).startswith(title):
            bodies.append(parts[i + 1])
    if len(bodies) <= nth:
        raise AssertionError(f"{path.name}: no section #{nth} for {title!r}")
    return bodies[nth]


@pytest.fixture(scope="session")
def nvgpuexp(captures: Path) -> dict[str, Path]:
    files = {p.name.split("__")[2]: p for p in captures.glob("nvgpuexp_capture__*.txt")}
    assert set(files) == {"nvidia-h100-80gb-hbm3", "nvidia-h100-mig", "nvidia-h200"}
    return files


@pytest.fixture(scope="session")
def section():
    """section(path, command_prefix, nth=0) -> body text of that capture section."""
    return _capture_section
