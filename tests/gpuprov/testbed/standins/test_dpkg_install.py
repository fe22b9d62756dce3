"""Install and upgrade the stand-ins with real apt and dpkg into a throwaway root (dpkg --root,
maintainer scripts run chrootless and honour DPKG_ROOT; apt reads a flat file: repository of
the built .debs). dpkg writes root-owned files, so this needs root; it needs no other setup."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import deb

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("dpkg"), reason="dpkg --root needs root"
)

PYTHON3_STATUS = """Package: python3
Status: install ok installed
Priority: optional
Section: python
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Version: 3.11.2-1+b1
Description: interactive high-level object-oriented language (default version)

"""

SET = (
    "libnvidia-compute-{b}",
    "nvidia-kernel-open-{b}",
    "nvidia-utils-{b}",
    "nvidia-persistenced",
    "nvidia-driver-{b}-open",
)


def dpkg(host, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [
        "dpkg",
        f"--root={host.root}",
        "--force-script-chrootless",
        "--force-not-root",
        f"--log={host.root}/var/log/dpkg.log",
        *args,
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def apt(host, *args: str) -> subprocess.CompletedProcess:
    """Real apt-get on the throwaway root, against a flat repository of the built .debs."""
    base = host.root.parent / "apt"
    if not (base / "sources.list").exists():
        for d in ("state/lists/partial", "cache/archives/partial"):
            (base / d).mkdir(parents=True, exist_ok=True)
        (base / "repo").mkdir()
        for path in host.debs.values():
            (base / "repo" / path.name).symlink_to(path)
        packages = subprocess.run(
            ["apt-ftparchive", "packages", "."],
            cwd=base / "repo",
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (base / "repo/Packages").write_text(packages)
        (base / "sources.list").write_text(f"deb [trusted=yes] file:{base}/repo ./\n")
        (base / "empty").mkdir()
    opts = {
        "Dir::State": base / "state",
        "Dir::State::status": host.root / "var/lib/dpkg/status",
        "Dir::Etc::SourceList": base / "sources.list",
        "Dir::Etc::SourceParts": base / "empty",
        "Dir::Etc::Preferences": base / "empty/none",
        "Dir::Etc::PreferencesParts": base / "empty",
        "Dir::Cache": base / "cache",
        "Debug::NoLocking": 1,
        "APT::Architecture": "amd64",
        "APT::Architectures": "amd64",
        "Dpkg::Use-Pty": 0,
        "APT::Sandbox::User": "root",
    }
    cmd = ["apt-get", "-y", "-q"] + [x for k, v in opts.items() for x in ("-o", f"{k}={v}")]
    for dpkg_opt in (
        f"--root={host.root}",
        "--force-script-chrootless",
        "--force-not-root",
        f"--log={host.root}/var/log/dpkg.log",
    ):
        cmd += ["-o", f"DPkg::Options::={dpkg_opt}"]
    proc = subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def installed(host) -> dict[str, str]:
    out = dpkg(host, "-l").stdout
    return {f[1]: f[2] for f in (line.split() for line in out.splitlines()) if f and f[0] == "ii"}


def release(host, version: str) -> list[str]:
    b = version.split(".")[0]
    fm = "nvidia-fabricmanager-570" if b == "570" else "nvidia-fabricmanager"
    return [str(deb(host.debs, n.format(b=b), version)) for n in (*SET, fm)]


@pytest.fixture
def dpkg_host(host):
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log"):
        (host.root / d).mkdir(parents=True, exist_ok=True)
    # Maintainer scripts run chrootless with this machine's python3: record it as installed in
    # the throwaway root's database so that gpuprov-gpu-sim's Depends is met honestly.
    (host.root / "var/lib/dpkg/status").write_text(PYTHON3_STATUS)
    host.profile("hgx-h100-8")
    dpkg(host, "-i", str(deb(host.debs, "gpuprov-gpu-sim", "0.1.0")))
    return host


@pytest.mark.skipif(
    not shutil.which("apt-ftparchive"), reason="apt-utils missing (make system-deps)"
)
def test_fresh_install_loads_module_and_upgrade_needs_reboot(dpkg_host):
    host = dpkg_host
    apt(host, "update")
    apt(host, "install", "nvidia-driver-570-open", "nvidia-fabricmanager-570")
    assert installed(host)["nvidia-fabricmanager-570"] == "570.133.20-1"
    # A fresh install loads the module at once, as modprobe does after the real DKMS build.
    assert (host.root / "run/nvidia-sim/module-version").read_text() == "570.133.20\n"
    assert host.run("/usr/bin/nvidia-smi", "-L").returncode == 0
    assert (
        host.root / "etc/systemd/system/multi-user.target.wants/nvidia-persistenced.service"
    ).is_symlink()

    upgrade = apt(host, "install", "nvidia-driver-580-open", "nvidia-fabricmanager").stdout
    assert "Removing nvidia-fabricmanager-570 (570.133.20-1)" in upgrade
    now = installed(host)
    assert now["nvidia-driver-580-open"] == "580.95.05-1"
    assert now["nvidia-fabricmanager"] == "580.95.05-1"
    assert not any(name.endswith("570") or "-570-" in name for name in now), now
    assert (host.root / "usr/share/nvidia/nvswitch/fabricmanager.cfg").exists()
    # The old module stays loaded until reboot.
    assert (host.root / "run/nvidia-sim/module-version").read_text() == "570.133.20\n"
    smi = host.run("/usr/bin/nvidia-smi", "-q", "-x")
    assert smi.returncode == 18 and "Driver/library version mismatch" in smi.stdout
    fm = host.run("/usr/bin/nv-fabricmanager", env={"GPUPROV_SIM_ONESHOT": "1"})
    assert fm.returncode == 1 and "don't match" in fm.stderr

    # Reboot: /run is emptied, the boot unit loads the installed module.
    shutil.rmtree(host.root / "run/nvidia-sim")
    assert host.run("/usr/lib/gpuprov-sim/gpuprov-gpu-sim/gpuprov-sim-load").returncode == 0
    assert host.run("/usr/bin/nvidia-smi", "-L").returncode == 0
    assert host.run("/usr/bin/nv-fabricmanager", env={"GPUPROV_SIM_ONESHOT": "1"}).returncode == 0


def test_exact_pins_refuse_mixed_versions(dpkg_host):
    host = dpkg_host
    dpkg(host, "-i", *release(host, "580.95.05")[:4])  # compute, kernel, utils, persistenced
    fm570 = str(deb(host.debs, "nvidia-fabricmanager-570", "570.133.20"))
    proc = dpkg(host, "-i", fm570, check=False)
    assert proc.returncode != 0
    assert "libnvidia-compute-570 (= 570.133.20-1)" in proc.stderr


def test_open_and_proprietary_modules_replace_each_other(dpkg_host):
    host = dpkg_host
    dpkg(host, "-i", str(deb(host.debs, "nvidia-kernel-open-580", "580.95.05")))
    dpkg(host, "-i", str(deb(host.debs, "nvidia-kernel-580", "580.95.05")))
    now = installed(host)
    assert "nvidia-kernel-580" in now and "nvidia-kernel-open-580" not in now
    assert (
        host.root / "usr/lib/nvidia-sim/module/version"
    ).read_text() == "580.95.05 proprietary\n"


def test_modprobe_refusals_on_fresh_install(dpkg_host):
    host = dpkg_host
    run = host.root / "run/nvidia-sim"
    host.profile("hgx-b200-8")  # Blackwell: open modules only
    proc = dpkg(host, "-i", str(deb(host.debs, "nvidia-kernel-580", "580.95.05")))
    assert "No such device" in proc.stderr
    assert not (run / "module-version").exists()
    dpkg(host, "-i", str(deb(host.debs, "nvidia-kernel-open-580", "580.95.05")))
    assert (run / "module-version").read_text() == "580.95.05\n"
    assert (run / "module-flavour").read_text() == "open\n"
    assert not (run / "load-error").exists()

    shutil.rmtree(run)
    host.profile("hgx-h100-8", secure_boot=True)  # unsigned DKMS module under Secure Boot
    dpkg(host, "-i", str(deb(host.debs, "nvidia-kernel-open-570", "570.133.20")))
    assert "Key was rejected by service" in (run / "load-error").read_text()
    assert not (run / "module-version").exists()


@pytest.mark.skipif(
    not shutil.which("apt-ftparchive"), reason="apt-utils missing (make system-deps)"
)
def test_old_dcgm_name_silently_replaces_dcgm4(dpkg_host):
    """DeepOps PR #1394: installing `datacenter-gpu-manager` took DGX OS 7 from DCGM 4 to 3."""
    host = dpkg_host
    apt(host, "update")
    apt(host, "install", "datacenter-gpu-manager-4-cuda12")
    assert host.run("/usr/bin/dcgmi", "--version").stdout == "Version : 4.4.1\n"
    out = apt(host, "install", "datacenter-gpu-manager").stdout
    assert "Removing datacenter-gpu-manager-4-core" in out
    now = installed(host)
    assert "datacenter-gpu-manager-4-core" not in now and now["datacenter-gpu-manager"].startswith(
        "1:3."
    )
    assert host.run("/usr/bin/dcgmi", "--version").stdout == "Version : 3.3.9\n"
