from __future__ import annotations

import shutil
import subprocess

import pytest

from gpuprov.operations.debversion import compare

CASES = [
    ("580.95.05-1", "570.133.20-1", 1),
    ("570.133.20-1", "570.133.20-1", 0),
    ("570.133.20-1", "570.133.20-0ubuntu1", 1),
    ("1:3.3.9-1", "4.4.1-1", 1),  # epoch wins
    ("1:4.4.1-1", "1:4.2.0-1", 1),
    ("1.0~rc1-1", "1.0-1", -1),  # tilde sorts before anything
    ("12.8.1-1", "12.8.1-1+b1", -1),
    ("20.10.24+dfsg1-1+b3", "20.10.24+dfsg1-1", 1),
    ("0", "00", 0),
]


@pytest.mark.parametrize(("a", "b", "want"), CASES)
def test_compare(a: str, b: str, want: int) -> None:
    assert compare(a, b) == want
    assert compare(b, a) == -want


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg not installed")
@pytest.mark.parametrize(("a", "b", "want"), CASES)
def test_agrees_with_dpkg(a: str, b: str, want: int) -> None:
    op = {-1: "lt", 0: "eq", 1: "gt"}[want]
    assert subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0
