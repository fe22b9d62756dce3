"""The stand-in .debs: names, versions, dependency shape, labels, reproducibility."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from gpuprov.errors import InputError
from gpuprov.testbed.standins import LABEL, build_standins

from .conftest import deb


def field(path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(path), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def contents(path) -> list[str]:
    out = subprocess.run(
        ["dpkg-deb", "-c", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[5].lstrip(".") for line in out.splitlines()]


def test_names_and_versions(debs):
    names = {(field(p, "Package"), field(p, "Version")) for p in debs.values()}
    for b, v in (("570", "570.133.20-1"), ("580", "580.95.05-1")):
        for name in (
            f"nvidia-driver-{b}-open",
            f"cuda-drivers-{b}",
            f"nvidia-driver-{b}",
            f"nvidia-kernel-{b}",
            f"nvidia-kernel-open-{b}",
            f"nvidia-utils-{b}",
            f"libnvidia-compute-{b}",
        ):
            assert (name, v) in names
        assert ("nvidia-persistenced", v) in names
    assert ("nvidia-fabricmanager-570", "570.133.20-1") in names
    assert ("nvidia-fabricmanager", "580.95.05-1") in names
    assert not any(n == "nvidia-fabricmanager-580" for n, _ in names)
    for n in (
        "nvidia-container-toolkit",
        "nvidia-container-toolkit-base",
        "libnvidia-container-tools",
        "libnvidia-container1",
    ):
        assert (n, "1.17.8-1") in names
    assert ("datacenter-gpu-manager-4-cuda12", "1:4.4.1-1") in names
    assert ("datacenter-gpu-manager-4-cuda13", "1:4.4.1-1") in names
    assert any(n == "datacenter-gpu-manager" and v.startswith("1:3.") for n, v in names)
    assert ("cuda-toolkit-12-8", "12.8.1-1") in names
    assert ("cuda-toolkit-13-0", "13.0.2-1") in names
    assert ("gpuprov-gpu-sim", "0.1.0-1") in names


def test_every_description_is_labelled(debs):
    for path in debs.values():
        description = field(path, "Description")
        assert description.startswith(LABEL), path.name
        assert "not the NVIDIA software" in description


def test_driver_dependency_shape(debs):
    open_meta = deb(debs, "nvidia-driver-580-open", "580.95.05")
    deps = field(open_meta, "Depends")
    assert "nvidia-kernel-open-580 (= 580.95.05-1)" in deps
    assert "nvidia-utils-580 (= 580.95.05-1)" in deps
    assert "libnvidia-compute-580 (= 580.95.05-1)" in deps
    assert "nvidia-persistenced (>= 580.95.05-1)" in deps
    assert "nvidia-driver-580 (= 580.95.05-1)" in field(
        deb(debs, "cuda-drivers-580", "580.95.05"), "Depends"
    )
    assert "nvidia-kernel-580 (= 580.95.05-1)" in field(
        deb(debs, "nvidia-driver-580", "580.95.05"), "Depends"
    )
    kopen = deb(debs, "nvidia-kernel-open-580", "580.95.05")
    kprop = deb(debs, "nvidia-kernel-580", "580.95.05")
    assert "nvidia-kernel-580" in field(kopen, "Conflicts").split(", ")
    assert "nvidia-kernel-open-580" in field(kprop, "Conflicts").split(", ")
    for other in ("nvidia-kernel-open-570", "nvidia-kernel-570"):
        assert other in field(kopen, "Conflicts").split(", ")
        assert other in field(kopen, "Replaces").split(", ")
    utils = deb(debs, "nvidia-utils-580", "580.95.05")
    assert "nvidia-utils-570" in field(utils, "Conflicts") and "nvidia-utils-570" in field(
        utils, "Replaces"
    )
    assert "/usr/bin/nvidia-smi" in contents(utils)


def test_fabric_manager_pinned_and_renamed(debs):
    fm570 = deb(debs, "nvidia-fabricmanager-570", "570.133.20")
    fm580 = deb(debs, "nvidia-fabricmanager", "580.95.05")
    assert field(fm570, "Depends") == "libnvidia-compute-570 (= 570.133.20-1), python3"
    assert field(fm580, "Depends") == "libnvidia-compute-580 (= 580.95.05-1), python3"
    assert "nvidia-fabricmanager-570" in field(fm580, "Conflicts").split(", ")
    assert "nvidia-fabricmanager-570" in field(fm580, "Replaces").split(", ")
    for p in (fm570, fm580):
        files = contents(p)
        assert "/lib/systemd/system/nvidia-fabricmanager.service" in files
        assert "/usr/bin/nv-fabricmanager" in files


def test_dcgm_cuda_and_toolkit_contents(debs):
    core = deb(debs, "datacenter-gpu-manager-4-core", "4.4.1")
    assert {
        "/usr/bin/dcgmi",
        "/usr/bin/nv-hostengine",
        "/lib/systemd/system/nvidia-dcgm.service",
    } <= set(contents(core))
    assert "datacenter-gpu-manager" in field(core, "Conflicts").split(", ")
    assert (
        field(deb(debs, "datacenter-gpu-manager-4-cuda12", "4.4.1"), "Depends")
        == "datacenter-gpu-manager-4-core (= 1:4.4.1-1)"
    )
    tk = contents(deb(debs, "cuda-toolkit-12-8", "12.8.1"))
    assert {"/usr/local/cuda-12.8/bin/nvcc", "/usr/local/cuda-12.8/lib64/libcudart.so.12"} <= set(
        tk
    )
    assert "/usr/local/cuda-13.0/lib64/libcudart.so.13" in contents(
        deb(debs, "cuda-toolkit-13-0", "13.0.2")
    )
    ctk = deb(debs, "nvidia-container-toolkit", "1.17.8")
    assert "nvidia-container-toolkit-base (= 1.17.8-1)" in field(ctk, "Depends")
    assert "/usr/bin/nvidia-ctk" in contents(deb(debs, "nvidia-container-toolkit-base", "1.17.8"))
    sim = deb(debs, "gpuprov-gpu-sim", "0.1.0")
    assert {
        "/usr/local/sbin/lspci",
        "/usr/local/sbin/mokutil",
        "/lib/systemd/system/gpuprov-sim-load.service",
    } <= set(contents(sim))
    assert "/lib/systemd/system/nvidia-persistenced.service" in contents(
        deb(debs, "nvidia-persistenced", "580.95.05")
    )


def test_reproducible_and_cached(tmp_path, debs):
    first = build_standins(tmp_path / "a")
    second = build_standins(tmp_path / "b")

    def digests(paths):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}

    assert digests(first) == digests(second)
    assert digests(first) == digests(debs.values())
    mtimes = {p: p.stat().st_mtime_ns for p in first}
    again = build_standins(tmp_path / "a")  # cached: nothing rebuilt
    assert {p: p.stat().st_mtime_ns for p in again} == mtimes


def test_one_release_only(tmp_path):
    paths = build_standins(tmp_path, releases=("580.95.05",))
    assert not any("570" in p.name for p in paths)
    # 580 packages still conflict with the 570 names, so upgrades work whichever set is built.
    assert any(p.name.startswith("nvidia-fabricmanager_580") for p in paths)


def test_unknown_release_is_a_located_input_error(tmp_path):
    with pytest.raises(InputError) as err:
        build_standins(tmp_path, releases=("575.57.08",))
    assert "catalog.json" in str(err.value) and "575.57.08" in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing half-written
