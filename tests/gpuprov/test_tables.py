from __future__ import annotations

import pytest

from gpuprov import tables
from gpuprov.tables import TableError


def test_profiles_cover_the_systems_we_sell():
    names = set(tables.profiles())
    assert {
        "a100-pcie",
        "hgx-a100-8",
        "h100-pcie",
        "h100-nvl",
        "hgx-h100-8",
        "hgx-h200-8",
        "hgx-b200-8",
    } <= names
    h100 = tables.get_profile("hgx-h100-8")
    assert h100.gpu_pci_ids == ("10de:2330",) and h100.nvswitch_pci_ids == ("10de:22a3",)
    assert h100.nvswitch_count == 4 and h100.gpu_count == 8
    a100 = tables.get_profile("hgx-a100-8")
    assert {"10de:20b2", "10de:20b0"} <= set(a100.gpu_pci_ids) and a100.nvswitch_count == 6
    assert "NVIDIA A100-SXM4-40GB" in a100.gpu_models
    assert tables.get_profile("hgx-h200-8").gpu_pci_ids == ("10de:2335",)
    b200 = tables.get_profile("hgx-b200-8")
    assert b200.open_modules == "required" and b200.min_driver_branch == 570
    assert {"nvlsm", "libnvsdm"} <= set(b200.extra_packages)


def test_profile_gpu_models_match_real_captures(captures):
    """The Product Name we expect is what real nvidia-smi printed on that hardware."""
    text = (captures / "gpud_h100-80gb-hbm3_8gpu_q_535.161.08.txt").read_text()
    assert f": {tables.get_profile('hgx-h100-8').gpu_model}\n" in text
    assert "0x233010DE" in text  # device 2330, the id in the profile
    text = (captures / "nvgpuexp_capture__linux-x86_64__nvidia-h200__590.48.01.txt").read_text()
    assert f": {tables.get_profile('hgx-h200-8').gpu_model}\n" in text


def test_profile_table_consistency():
    for p in tables.profiles().values():
        assert p.gpu_model in p.gpu_models
        assert all(
            i.startswith("10de:") and len(i) == 9 and i == i.lower()
            for i in p.gpu_pci_ids + p.nvswitch_pci_ids
        )
        assert p.nvswitch == (p.nvswitch_count > 0)
        assert p.open_modules in ("required", "recommended", "unsupported")
        # every profile's minimum branch (or the OS's first, when it is newer: Debian 13
        # starts at 580) has package names on every OS
        for os_id in tables.os_ids():
            branch = max(p.min_driver_branch, tables.os_branches(os_id)[0])
            for modules in ("open", "proprietary"):
                pk = tables.packages_for(os_id, str(branch), f"{branch}.1.1", modules)
                assert pk.driver and pk.fabricmanager and pk.kernel_module


def test_get_profile_unknown_is_typed():
    with pytest.raises(TableError, match="known: .*hgx-h100-8"):
        tables.get_profile("dgx-1")


def test_cuda_min_driver():
    assert tables.cuda_min_driver("12.8") == "570.26"
    assert tables.cuda_min_driver("13.0") == "580.65.06"
    assert tables.cuda_min_driver("12.2") == "535.54.03"
    with pytest.raises(TableError, match="unknown CUDA version '12.7'"):
        tables.cuda_min_driver("12.7")
    assert tables.cuda_compat_branch("13.1") == 580 and tables.cuda_compat_branch("12.9") == 525
    assert tables.driver_supports_cuda("580.95.05", "13.0")
    assert not tables.driver_supports_cuda("570.124.06", "13.0")


def test_every_cuda_maps_to_a_driver_of_a_known_branch():
    versions = tables.cuda_versions()
    assert versions[0] == "12.0" and "13.2" in versions
    prev = (0,)
    for cuda in versions:
        drv = tables.cuda_min_driver(cuda)
        key = tables.version_key(drv)
        assert key > prev, "newer toolkits never need an older driver"
        prev = key
        assert int(drv.split(".")[0]) >= tables.cuda_compat_branch(cuda)
        # a package exists for that driver's branch and the toolkit itself
        for os_id in tables.os_ids():
            tables.cuda_toolkit_package(os_id, cuda)


@pytest.mark.parametrize(
    "os_id,modules,driver,kmod,version",
    [
        (
            "ubuntu2204",
            "open",
            "nvidia-driver-580-open",
            "nvidia-kernel-open-580",
            "580.95.05-0ubuntu1",
        ),
        # Ubuntu's packaging: cuda-drivers-<branch> is versioned -1 there and there is
        # no nvidia-kernel-<branch> (tests/fixtures/ubuntu/: the recorded index).
        (
            "ubuntu2404",
            "proprietary",
            "nvidia-driver-580",
            "nvidia-dkms-580",
            "580.95.05-0ubuntu1",
        ),
        ("debian12", "open", "nvidia-driver-580-open", "nvidia-kernel-open-580", "580.95.05-1"),
        ("debian12", "proprietary", "cuda-drivers-580", "nvidia-kernel-580", "580.95.05-1"),
        ("debian13", "open", "nvidia-driver-580-open", "nvidia-kernel-open-580", "580.95.05-1"),
        ("debian13", "proprietary", "cuda-drivers-580", "nvidia-kernel-580", "580.95.05-1"),
    ],
)
def test_apt_package_names_contract(os_id, modules, driver, kmod, version):
    pk = tables.packages_for(os_id, "580", "580.95.05", modules)
    assert (pk.manager, pk.driver, pk.kernel_module, pk.driver_version) == (
        "apt",
        driver,
        kmod,
        version,
    )
    assert pk.driver_spec == f"{driver}={version}"
    # Ubuntu ships the daemon in nvidia-compute-utils-<branch>.
    ubuntu = os_id.startswith("ubuntu")
    assert pk.persistenced == ("nvidia-compute-utils-580" if ubuntu else "nvidia-persistenced")
    assert pk.container_toolkit == "nvidia-container-toolkit"
    assert pk.dcgm("13") == "datacenter-gpu-manager-4-cuda13"
    assert pk.cuda_toolkit("12.8") == "cuda-toolkit-12-8"


def test_fabric_manager_naming_changes_at_580():
    old = tables.packages_for("debian12", "570", "570.133.20", "open")
    assert (old.fabricmanager, old.fabricmanager_version) == (
        "nvidia-fabricmanager-570",
        "570.133.20-1",
    )
    assert old.fabricmanager_spec == "nvidia-fabricmanager-570=570.133.20-1"
    new = tables.packages_for("ubuntu2204", "580", "580.95.05", "open")
    assert (new.fabricmanager, new.fabricmanager_version) == ("nvidia-fabricmanager", "580.95.05-1")
    assert (
        tables.packages_for("debian12", "535", "535.183.01", "open").fabricmanager
        == "nvidia-fabricmanager-535"
    )
    assert (
        tables.packages_for("debian12", "590", "590.48.01", "open").fabricmanager
        == "nvidia-fabricmanager"
    )


def test_rhel9_dnf_names():
    pk = tables.packages_for("rhel9", "580", "580.95.05", "open")
    assert pk.manager == "dnf" and pk.driver == "nvidia-driver:580-open"
    assert (
        tables.packages_for("rhel9", "580", "580.95.05", "proprietary").driver
        == "nvidia-driver:580-dkms"
    )
    assert pk.fabricmanager_spec == "nvidia-fabric-manager-580.95.05-1"
    assert tables.package_manager("rhel9") == "dnf" and tables.package_manager("debian12") == "apt"


def test_packages_for_refuses_what_does_not_exist():
    with pytest.raises(TableError, match="unknown OS 'centos7'"):
        tables.packages_for("centos7", "580", "580.95.05", "open")
    with pytest.raises(TableError, match="branch 525 has no packages for debian12"):
        tables.packages_for("debian12", "525", "525.147.05", "open")
    with pytest.raises(TableError, match="not of branch 580"):
        tables.packages_for("debian12", "580", "570.1.2", "open")
    with pytest.raises(TableError, match="open' or 'proprietary"):
        tables.packages_for("debian12", "580", "580.95.05", "auto")  # type: ignore[arg-type]
    with pytest.raises(TableError, match="CUDA major '10'"):
        tables.dcgm_package("debian12", "10")


def test_debian13_starts_at_580_and_has_every_runtime():
    assert tables.os_branches("debian13")[0] == 580
    with pytest.raises(TableError, match="branch 570 has no packages for debian13"):
        tables.packages_for("debian13", "570", "570.133.20", "open")
    assert tables.runtime_packages("debian13", "docker") == ("docker.io", "docker-ce")
    assert tables.runtime_packages("debian13", "podman") == ("podman",)
    assert tables.runtime_packages("rhel9", "podman") == ("podman",)
    assert tables.runtime_extra_packages("debian13", "docker") == ("docker-cli",)
    assert tables.runtime_extra_packages("debian12", "docker") == ()
    with pytest.raises(TableError, match="no packages for container runtime 'lxc'"):
        tables.runtime_packages("debian13", "lxc")
