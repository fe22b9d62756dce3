from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gpuprov.parsers import ParseError
from gpuprov.parsers.lspci import nvidia_gpus, nvswitches, parse_lspci

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "lspci"
needs_lspci = pytest.mark.skipif(shutil.which("lspci") is None, reason="pciutils not installed")


def test_reconstructed_hgx_h100():
    # Reconstructed from pci.ids names and the real line format (see fixtures/lspci/README.md).
    devices = parse_lspci((FIXTURES / "hgx-h100-8_lspci-nn.txt").read_text())
    assert len(devices) == 15
    gpus = nvidia_gpus(devices)
    assert len(gpus) == 8 and {g.pci_id for g in gpus} == {"10de:2330"}
    assert gpus[0].slot == "18:00.0" and gpus[0].cls == "3D controller"
    assert gpus[0].name == "NVIDIA Corporation GH100 [H100 SXM5 80GB]" and gpus[0].rev == "a1"
    sw = nvswitches(devices)
    assert len(sw) == 4 and {s.pci_id for s in sw} == {"10de:22a3"} and sw[0].class_id == "0680"
    sata = devices[-1]
    assert (sata.pci_id, sata.rev) == ("8086:1bf2", "11")  # "(prog-if ...)" tolerated


@needs_lspci
def test_this_machine_nn_and_nnmm_agree():
    nn = subprocess.run(["lspci", "-nn"], capture_output=True, text=True, check=True).stdout
    mm = subprocess.run(["lspci", "-nnmm"], capture_output=True, text=True, check=True).stdout
    a, b = parse_lspci(nn), parse_lspci(mm)
    assert len(a) == len(nn.strip().splitlines()) > 0
    assert [(d.slot, d.class_id, d.pci_id, d.rev) for d in a] == [
        (d.slot, d.class_id, d.pci_id, d.rev) for d in b
    ]
    assert nvidia_gpus(a) == [
        d for d in a if d.vendor_id == "10de" and d.class_id in ("0300", "0302")
    ]


@needs_lspci
def test_domain_form():
    out = subprocess.run(["lspci", "-D", "-nn"], capture_output=True, text=True, check=True).stdout
    assert all(d.slot.count(":") == 2 for d in parse_lspci(out))


@pytest.mark.parametrize(
    "line",
    [
        "pcilib: Cannot open /proc/bus/pci",
        "18:00.0 3D controller: NVIDIA Corporation GH100 (rev a1)",  # plain `lspci`, no -nn
        '18:00.0 "3D controller [0302]" "NVIDIA Corporation" "GH100 [2330]"',
    ],
)
def test_garbage(line):
    with pytest.raises(ParseError):
        parse_lspci(line)
