"""Install and upgrade the stand-ins with real dpkg into a throwaway root (dpkg --root, with
maintainer scripts run chrootless and honouring DPKG_ROOT). dpkg writes root-owned files, so
this needs root; it needs no other setup."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import deb

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("dpkg"), reason="dpkg --root needs root"
)

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
    (host.root / "var/lib/dpkg/status").touch()
    host.profile("hgx-h100-8")
    # python3 is not in the throwaway root's dpkg database: the only dependency forced.
    dpkg(host, "--force-depends", "-i", str(deb(host.debs, "gpuprov-gpu-sim", "0.1.0")))
    return host


def test_fresh_install_loads_module_and_upgrade_needs_reboot(dpkg_host):
    host = dpkg_host
    dpkg(host, "-i", *release(host, "570.133.20"))
    assert installed(host)["nvidia-fabricmanager-570"] == "570.133.20-1"
    # A fresh install loads the module at once, as modprobe does after the real DKMS build.
    assert (host.root / "run/nvidia-sim/module-version").read_text() == "570.133.20\n"
    assert host.run("/usr/bin/nvidia-smi", "-L").returncode == 0
    assert (
        host.root / "etc/systemd/system/multi-user.target.wants/nvidia-persistenced.service"
    ).is_symlink()

    # apt passes --auto-deconfigure too: the 570 set is deconfigured, then replaced.
    dpkg(host, "--auto-deconfigure", "-i", *release(host, "580.95.05"))
    now = installed(host)
    assert now["nvidia-driver-580-open"] == "580.95.05-1"
    assert now["nvidia-fabricmanager"] == "580.95.05-1"
    assert not any(name.endswith("570") or "-570-" in name for name in now), now
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
