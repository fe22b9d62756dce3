from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gpuprov.parsers import ParseError
from gpuprov.parsers.system import (
    parse_apt_mark_showhold,
    parse_df_free_bytes,
    parse_dpkg_query,
    parse_mokutil_sb_state,
    parse_nvidia_module_version,
    parse_os_release,
    parse_versionlock_list,
)

UBUNTU_2204 = """PRETTY_NAME="Ubuntu 22.04.5 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.5 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
"""
ROCKY_9 = """NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
"""


def run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_os_release_this_machine():
    text = Path("/etc/os-release").read_text()
    r = parse_os_release(text)
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert r.id == values["ID"].strip('"')
    assert r.os_key.startswith(r.id) or r.os_key.startswith("rhel")


@pytest.mark.parametrize(
    ("text", "key", "family"),
    [
        (UBUNTU_2204, "ubuntu2204", "debian"),
        (ROCKY_9, "rhel9", "rhel"),
        ('ID=debian\nVERSION_ID="12"\n', "debian12", "debian"),
        ('ID="rhel"\nVERSION_ID="9.6"\n', "rhel9", "rhel"),
    ],
)
def test_os_keys(text, key, family):
    r = parse_os_release(text)
    assert (r.os_key, r.family) == (key, family)


def test_os_release_garbage():
    with pytest.raises(ParseError, match="no ID= line"):
        parse_os_release('NAME="x"\n')
    with pytest.raises(ParseError, match="not KEY=value"):
        parse_os_release("<html>404</html>\n")


def test_mokutil():
    assert parse_mokutil_sb_state("SecureBoot enabled\n") is True
    assert parse_mokutil_sb_state("SecureBoot disabled\nPlatform is in Setup Mode\n") is False
    assert parse_mokutil_sb_state("EFI variables are not supported on this system\n") is None
    with pytest.raises(ParseError):
        parse_mokutil_sb_state("mokutil: command not found")


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a dpkg system")
def test_dpkg_query_this_machine():
    out = run("dpkg-query", "-W", "-f=${Package}\\t${Version}\\t${Status}\\n")
    pkgs = parse_dpkg_query(out)
    assert "dpkg" in pkgs and pkgs["dpkg"].installed
    assert pkgs["dpkg"].version == run("dpkg-query", "-W", "-f=${Version}", "dpkg")
    # Removed-but-configured packages are dropped.
    assert all(p.installed for p in pkgs.values())


def test_dpkg_query_status_and_garbage():
    text = "nvidia-driver-580-open\t580.95.05-0ubuntu1\thold ok installed\nfoo\t1\tdeinstall ok config-files\n"
    pkgs = parse_dpkg_query(text)
    assert list(pkgs) == ["nvidia-driver-580-open"]
    with pytest.raises(ParseError, match="3 tab-separated"):
        parse_dpkg_query("dpkg-query: no packages found matching nvidia*\n")


@pytest.mark.skipif(shutil.which("apt-mark") is None, reason="no apt")
def test_apt_mark_showhold_this_machine():
    held = parse_apt_mark_showhold(run("apt-mark", "showhold"))
    assert isinstance(held, set) and all(" " not in n for n in held)
    assert parse_apt_mark_showhold("cuda-drivers-580\nnvidia-fabricmanager\n") == {
        "cuda-drivers-580",
        "nvidia-fabricmanager",
    }


def test_df_this_machine():
    free = parse_df_free_bytes(run("df", "-Pk", "/"))
    st = os.statvfs("/")
    assert abs(free - st.f_bavail * st.f_frsize) < 256 * 1024 * 1024  # other writers on the disk
    with pytest.raises(ParseError):
        parse_df_free_bytes("df: /nope: No such file or directory\n")


def test_module_version():
    assert parse_nvidia_module_version("580.95.05\n") == "580.95.05"
    proc = (
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  "
        "(dvs-builder@U16-I3-B03-4-3)  Tue Sep 23 09:50:58 UTC 2025\n"
        "GCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)\n"
    )
    assert parse_nvidia_module_version(proc) == "580.95.05"
    assert (
        parse_nvidia_module_version(
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.161.08  Wed"
        )
        == "535.161.08"
    )
    with pytest.raises(ParseError):
        parse_nvidia_module_version("cat: /sys/module/nvidia/version: No such file or directory")


def test_versionlock_list_as_the_plugin_writes_it():
    """The lock list dnf-plugins-core's versionlock wrote after the driver deploy's
    `dnf versionlock add` (tests/fixtures/dnf/README.md): name -> version-release, the
    epoch dropped (HostState's rpm query gives none), the arch glob too."""
    text = (Path(__file__).resolve().parents[2] / "fixtures/dnf/versionlock.list").read_text()
    v = "580.95.05"
    assert parse_versionlock_list(text) == {
        "kmod-nvidia-open-dkms": f"{v}-1.el9",
        "nvidia-driver": f"{v}-1.el9",
        "nvidia-driver-libs": f"{v}-1.el9",
        "nvidia-driver-cuda": f"{v}-1.el9",
        "nvidia-driver-cuda-libs": f"{v}-1.el9",
        "nvidia-kmod-common": f"{v}-1.el9",
        "nvidia-persistenced": f"{v}-1.el9",
        "nvidia-fabric-manager": f"{v}-1",
    }


def test_versionlock_excludes_lock_nothing_and_garbage_is_named():
    assert parse_versionlock_list("!nvidia-driver-3:580.105.08-1.el9.*\n") == {}
    with pytest.raises(ParseError, match="not a name-\\[epoch:\\]version-release.arch"):
        parse_versionlock_list("nvidia-driver\n")
