from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gpuprov.errors import InputError
from gpuprov.inventory.loader import load_inventory

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "inventories" / "example.yaml"

MINIMAL = """\
cluster:
  name: t
  stack:
    os: debian12
    driver: {branch: "580", version: "580.95.05", modules: auto}
    cuda: ["12.8", "13.0"]
  mirror: {host: mirror01}
groups:
  gpu:
    profile: hgx-h100-8
    hosts:
      g1: {address: 10.0.0.1, rack: r1}
      g2: {address: 10.0.0.2, rack: r2}
  mirror:
    role: mirror
    hosts:
      mirror01: {address: 10.0.0.5}
"""


@pytest.fixture
def write(tmp_path):
    def _write(text: str, name: str = "inv.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p

    return _write


@pytest.fixture
def problems(write):
    """Load `text`; return the problems of the InputError it must raise."""

    def _problems(text: str) -> list:
        path = write(text)
        with pytest.raises(InputError) as info:
            load_inventory(path)
        for p in info.value.problems:
            assert p.location.file == str(path)
        return info.value.problems

    return _problems
