"""Fabric manager, persistenced, DCGM and the GPU-sim shims on a simulated host."""

from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET

FM = "/usr/bin/nv-fabricmanager"
SMI = "/usr/bin/nvidia-smi"
ONESHOT = {"GPUPROV_SIM_ONESHOT": "1"}


def fm_host(host, fm_version: str, loaded: str | None, profile: str = "hgx-h100-8", **faults):
    name = "nvidia-fabricmanager-570" if fm_version.startswith("570") else "nvidia-fabricmanager"
    host.extract(name, fm_version)
    host.extract("nvidia-utils-" + fm_version[:3], fm_version)
    host.profile(profile, **faults)
    host.load_module(loaded)


def fabric_states(host) -> set[str]:
    xml = ET.fromstring(host.run(SMI, "-q", "-x").stdout)
    return {g.findtext("fabric/state") for g in xml.findall("gpu")}


def test_fabric_manager_refuses_version_mismatch(host):
    fm_host(host, "580.95.05", loaded="570.133.20")
    proc = host.run(FM, "-c", "/usr/share/nvidia/nvswitch/fabricmanager.cfg", env=ONESHOT)
    assert proc.returncode == 1
    assert (
        "fabric manager NVIDIA GPU driver interface version 580.95.05 don't match with driver version 570.133.20"
        in proc.stderr
    )
    assert not (host.root / "run/nvidia-sim/fabric-state").exists()
    assert "don't match" in (host.root / "var/log/fabricmanager.log").read_text()


def test_fabric_manager_refuses_without_nvswitch(host):
    fm_host(host, "580.95.05", loaded="580.95.05", profile="h100-pcie")
    proc = host.run(FM, env=ONESHOT)
    assert proc.returncode == 1 and "NVSwitch" in proc.stderr


def test_fabric_manager_completes_fabric(host):
    fm_host(host, "580.95.05", loaded="580.95.05")
    assert fabric_states(host) == {"In Progress"}
    assert host.run(FM, env=ONESHOT).returncode == 0
    assert fabric_states(host) == {"Completed"}


def test_fabric_manager_daemon_and_injected_in_progress(host):
    fm_host(host, "570.133.20", loaded="570.133.20", fabric_in_progress=True)
    host.daemon(FM, "/run/nvidia-fabricmanager/nv-fabricmanager.pid")
    assert (host.root / "run/nvidia-sim/fabric-state").read_text().strip() == "Completed"
    assert fabric_states(host) == {"In Progress"}  # the profile's fault wins


def dcgm_host(host, **faults):
    host.extract("datacenter-gpu-manager-4-core", "4.4.1")
    host.extract("nvidia-persistenced", "580.95.05")
    host.extract("nvidia-utils-580", "580.95.05")
    host.profile("hgx-h100-8", **faults)
    host.load_module("580.95.05")


def test_dcgmi_needs_hostengine(host):
    dcgm_host(host)
    proc = host.run("/usr/bin/dcgmi", "diag", "-r", "1")
    assert proc.returncode != 0 and "Unable to connect to host engine" in proc.stderr


def test_dcgmi_diag_pass_and_format(host, captures):
    dcgm_host(host)
    host.daemon("/usr/bin/nv-hostengine", "/run/nvidia-sim/nv-hostengine.pid")
    host.daemon("/usr/bin/nvidia-persistenced", "/run/nvidia-persistenced/nvidia-persistenced.pid")
    assert (
        host.run(SMI, "--query-gpu=persistence_mode", "--format=csv,noheader").stdout.splitlines()[
            0
        ]
        == "Enabled"
    )
    proc = host.run("/usr/bin/dcgmi", "diag", "-r", "1")
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    real = (
        (captures / "azhpc-doc_h200_8gpu_dcgmi-diag-r1_dcgm3.1.8_550.127.08.txt")
        .read_text()
        .splitlines()
    )
    assert lines[:4] == real[:4]  # banner, border, header, ===== line
    assert all(len(line) == len(real[1]) for line in lines[1:])  # same table width throughout
    assert "| GPU Device IDs Detected   | 2330,2330,2330,2330,2330,2330,2330,2330        |" in lines
    assert "| Driver Version Detected   | 580.95.05                                      |" in lines
    assert not any("Fail" in line for line in lines)


def test_dcgmi_diag_fails_on_faults(host):
    dcgm_host(host, ecc_uncorrectable={2: 5}, missing_gpus=1)
    host.daemon("/usr/bin/nv-hostengine", "/run/nvidia-sim/nv-hostengine.pid")
    proc = host.run("/usr/bin/dcgmi", "diag", "-r", "1")
    assert proc.returncode != 0
    results = dict(re.findall(r"^\| (\S[^|]*?)\s+\| (Pass|Fail)\s+\|$", proc.stdout, re.M))
    assert results["Page Retirement/Row Remap"] == "Fail"
    assert results["NVML Library"] == "Fail"
    assert results["Persistence Mode"] == "Fail"  # persistenced not running
    discovery = host.run("/usr/bin/dcgmi", "discovery", "-l").stdout
    assert discovery.startswith("7 GPUs found.") and "4 NvSwitches found." in discovery


def test_lspci_and_mokutil_shims(host):
    host.extract("gpuprov-gpu-sim", "0.1.0")
    host.profile("hgx-h100-8", missing_gpus=1)
    out = host.run("/usr/local/sbin/lspci", "-nn", "-d", "10de:").stdout.splitlines()
    gpus = [line for line in out if "3D controller" in line]
    switches = [line for line in out if "NVSwitch" in line]
    assert (
        gpus[0]
        == "18:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev a1)"
    )
    assert len(gpus) == 8 and gpus[-1].endswith("(rev ff)")  # fell off the bus
    assert len(switches) == 4
    assert host.run("/usr/local/sbin/lspci", "-d", "10de:9999").stdout == ""
    assert host.run("/usr/local/sbin/mokutil", "--sb-state").stdout == "SecureBoot disabled\n"
    host.profile("hgx-b200-8", secure_boot=True)
    assert host.run("/usr/local/sbin/mokutil", "--sb-state").stdout == "SecureBoot enabled\n"


def test_sim_load_is_a_reboot(host):
    host.extract("gpuprov-gpu-sim", "0.1.0")
    host.extract("nvidia-kernel-open-580", "580.95.05")
    host.profile("hgx-h100-8")
    host.load_module("570.133.20")
    (host.root / "run/nvidia-sim/fabric-state").write_text("Completed\n")
    assert host.run("/usr/lib/gpuprov-sim/gpuprov-gpu-sim/gpuprov-sim-load").returncode == 0
    assert (host.root / "run/nvidia-sim/module-version").read_text() == "580.95.05\n"
    assert (host.root / "run/nvidia-sim/module-flavour").read_text() == "open\n"
    assert not (host.root / "run/nvidia-sim/fabric-state").exists()
    host.profile("hgx-h100-8", secure_boot=True)  # unsigned module under Secure Boot
    host.run("/usr/lib/gpuprov-sim/gpuprov-gpu-sim/gpuprov-sim-load")
    assert not (host.root / "run/nvidia-sim/module-version").exists()
    assert "Key was rejected" in (host.root / "run/nvidia-sim/load-error").read_text()


def test_nvcc_version(host):
    host.extract("cuda-toolkit-12-8", "12.8.1")
    out = host.run("/usr/local/cuda-12.8/bin/nvcc", "--version").stdout.splitlines()
    assert out[0] == "nvcc: NVIDIA (R) Cuda compiler driver"
    assert out[3] == "Cuda compilation tools, release 12.8, V12.8.93"
    assert re.fullmatch(r"Build cuda_12\.8\.r12\.8/compiler\.\d+_0", out[4])


def test_sim_load_refuses_proprietary_on_blackwell(host):
    host.extract("gpuprov-gpu-sim", "0.1.0")
    host.extract("nvidia-kernel-580", "580.95.05")
    host.profile("hgx-b200-8")
    proc = host.run("/usr/lib/gpuprov-sim/gpuprov-gpu-sim/gpuprov-sim-load")
    assert "requires the NVIDIA open kernel modules" in proc.stderr
    assert not (host.root / "run/nvidia-sim/module-version").exists()
    host.extract("nvidia-utils-580", "580.95.05")
    smi = host.run("/usr/bin/nvidia-smi")
    assert smi.returncode == 9 and "couldn't communicate with the NVIDIA driver" in smi.stdout


def test_reboot_command_on_a_light_host(host):
    import subprocess

    from gpuprov.testbed.standins import reboot_command

    dcgm_host(host)
    host.extract("gpuprov-gpu-sim", "0.1.0")
    host.extract("nvidia-kernel-open-580", "580.95.05")
    host.load_module("570.133.20")  # the module loaded before an upgrade
    host.load_module("580.95.05")
    host.daemon("/usr/bin/nvidia-persistenced", "/run/nvidia-persistenced/nvidia-persistenced.pid")
    pid = int((host.root / "run/nvidia-persistenced/nvidia-persistenced.pid").read_text())
    host.load_module("570.133.20")
    subprocess.run(["sh", "-c", reboot_command(str(host.root))], check=True, timeout=30)
    assert not (host.root / "run/nvidia-persistenced/nvidia-persistenced.pid").exists()
    for _ in range(50):  # the daemon exits on SIGTERM
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("nvidia-persistenced still running after the simulated reboot")
    assert (host.root / "run/nvidia-sim/module-version").read_text() == "580.95.05\n"
