"""End to end on one test-bed VM (Debian 12, systemd, TCG) with the stand-in NVIDIA
packages published in a signed apt repository served to the VM: the real `gpuprov`
CLI, real SSH, real apt, a real reboot.

The steps run in file order on the same VM (each needs the one before):
fresh apply (570) -> verify -> second apply changes nothing -> plan is empty ->
upgrade to 580 (one transaction, one reboot, new CDI) -> verify -> the user's containerd
settings survived -> fault profiles make verify/preflight fail naming the fault -> the
wrong branch's fabric manager is named by verify and repaired by apply.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from gpu_vm import as_json, gpuprov, publish_site, set_group_vars, simulated_gpu_vm
from ruamel.yaml import YAML

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(3000)]

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "deploys"
OLD, NEW = "570.133.20", "580.95.05"
PROFILE = "hgx-h100-8"
USER_CONTAINERD = """\
version = 2
oom_score = -999

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.site.local/pause:3.9"
"""
# Counts boots: one line per boot, so "rebooted exactly once" is a line count.
BOOT_LOG_UNIT = """\
[Unit]
Description=gpuprov test: record each boot
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'cat /proc/sys/kernel/random/boot_id >> /var/lib/gpuprov-test-boots'
[Install]
WantedBy=multi-user.target
"""


def runtime_debs(dest: Path) -> list[Path]:
    """containerd and runc from this machine's Debian mirror (the VM is air-gapped: the
    site mirror carries them, as it would on a real site)."""
    dest.mkdir(parents=True, exist_ok=True)
    debs = sorted(dest.glob("*.deb"))
    if len(debs) < 2:
        subprocess.run(["apt-get", "download", "containerd", "runc"], cwd=dest, check=True)
        debs = sorted(dest.glob("*.deb"))
    return debs


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Stand-ins + containerd published in a signed repo; the keyring apt trusts."""
    from gpuprov.testbed.standins import build_standins

    debs = build_standins(CACHE / "standins", releases=(OLD, NEW))
    return publish_site(tmp_path_factory.mktemp("site"), debs, runtime_debs(CACHE / "runtime"))


@pytest.fixture(scope="module")
def node(site, tmp_path_factory):
    """One VM with simulated HGX H100 hardware and an inventory pointing at it."""
    with simulated_gpu_vm(site, PROFILE, memory_mb=1536) as gpu:
        lab, vm, run = gpu.lab, gpu.vm, gpu.run
        run(
            "cat > /etc/systemd/system/boot-log.service <<'EOF'\n" + BOOT_LOG_UNIT + "EOF\n"
            "systemctl enable --now boot-log.service"
        )
        # A user's containerd configuration that must survive.
        run(
            "mkdir -p /etc/containerd && cat > /etc/containerd/config.toml <<'EOF'\n"
            + USER_CONTAINERD
            + "EOF"
        )
        inventory = lab.write_inventory(
            site["work"] / "lab.yaml",
            profile=PROFILE,
            driver={"branch": "570", "version": OLD, "modules": "auto"},
            cuda=["12.8"],
            container_runtime="containerd",
            dcgm=True,
        )
        set_group_vars(
            inventory,
            {
                "gpuprov_mirror_client": {
                    "apt_url": gpu.repo_url.rstrip("/"),
                    "suite": "gpuprov",
                    "keyring": str(site["keyring"]),
                },
                # Lab VMs: no kernel headers (nothing is built) and a small disk.
                "gpuprov_preflight_ignore": ["headers"],
                "gpuprov_min_free_gb": 0.3,
            },
        )
        yield {"vm": vm, "lab": lab, "inventory": inventory, "run": run, "site": site}


def set_driver(inventory: Path, branch: str, version: str, cuda: list[str]) -> None:
    yaml = YAML()
    doc = yaml.load(inventory.read_text())
    doc["cluster"]["stack"]["driver"].update({"branch": branch, "version": version})
    doc["cluster"]["stack"]["cuda"] = cuda
    with inventory.open("w") as fh:
        yaml.dump(doc, fh)


def verify(node, check: bool = True) -> dict:
    return as_json(gpuprov("verify", str(node["inventory"]), "-o", "json", check=check))


def failed_checks(report: dict) -> dict[str, str]:
    host = report["hosts"][0]
    return {c["name"]: c["detail"] for c in host["checks"] if not c["ok"]}


def boots(node) -> int:
    return len(node["run"]("cat /var/lib/gpuprov-test-boots").split())


def cuda_alternative(node) -> tuple[str, str]:
    """(Status, Value) of the `cuda` alternative, after checking /usr/local/cuda uses it."""
    assert node["run"]("readlink /usr/local/cuda").strip() == "/etc/alternatives/cuda"
    query = dict(
        line.split(": ", 1)
        for line in node["run"]("update-alternatives --query cuda").splitlines()
        if ": " in line
    )
    return query["Status"], query["Value"]


def test_fresh_apply_then_verify(node) -> None:
    inv = str(node["inventory"])
    result = as_json(gpuprov("apply", inv, "--yes", "-o", "json"))
    assert result["summary"]["failed"] == 0, result
    assert result["summary"]["changed"] > 0
    report = verify(node)
    assert report["ok"], failed_checks(report)
    host = report["hosts"][0]
    names = {c["name"] for c in host["checks"]}
    assert {"nvidia-smi", "gpu-count", "driver-version", "fabric", "cdi-spec"} <= names
    assert {"fabricmanager-version", "dcgm-diag"} <= names
    # No test image in the lab: the container step says so instead of passing.
    assert [n["name"] for n in host["not_checked"]] == ["container"]
    held = node["run"]("apt-mark showhold").split()
    assert {"nvidia-driver-570-open", "nvidia-fabricmanager-570"} <= set(held)
    assert cuda_alternative(node) == ("manual", "/usr/local/cuda-12.8")


def test_second_apply_changes_nothing(node) -> None:
    before = boots(node)
    result = as_json(gpuprov("apply", str(node["inventory"]), "--yes", "-o", "json"))
    assert result["summary"]["changed"] == 0, result
    assert result["summary"]["failed"] == 0
    assert boots(node) == before


def test_plan_after_apply_has_nothing_to_do(node) -> None:
    plan = as_json(gpuprov("plan", str(node["inventory"]), "-o", "json"))
    assert plan["summary"]["changes"] == 0, plan


def test_upgrade_570_to_580(node) -> None:
    inv = node["inventory"]
    set_driver(inv, "580", NEW, ["12.8", "13.0"])
    plan = as_json(gpuprov("plan", str(inv), "-o", "json"))
    changes = [c["name"] for c in plan["hosts"]["gpu001"]["changes"]]
    assert any(f"NVIDIA driver {NEW}" in c for c in changes), changes
    assert any("Reboot once" in c for c in changes), changes
    assert any("CDI spec" in c for c in changes), changes

    before = boots(node)
    result = as_json(gpuprov("apply", str(inv), "--yes", "-o", "json"))
    assert result["summary"]["failed"] == 0, result
    assert boots(node) == before + 1  # exactly one reboot

    # only packages dpkg has installed (a removed one stays listed, in state config-files)
    listed = node["run"](
        "dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\\n' 'nvidia-*'"
    )
    installed = "\n".join(
        line.rsplit(" ", 1)[0] for line in listed.splitlines() if line.endswith(" installed")
    )
    assert f"nvidia-fabricmanager {NEW}-1" in installed
    assert f"nvidia-driver-580-open {NEW}-1" in installed
    # replaced in the same transaction
    assert not re.search(r"^nvidia-fabricmanager-570 ", installed, re.M), listed
    assert f"libcuda.so.{NEW}" in node["run"]("cat /etc/cdi/nvidia.yaml")
    # The second toolkit registered itself with a higher priority; the default is pinned.
    assert cuda_alternative(node) == ("manual", "/usr/local/cuda-13.0")
    report = verify(node)
    assert report["ok"], failed_checks(report)
    # And converged again.
    assert as_json(gpuprov("plan", str(inv), "-o", "json"))["summary"]["changes"] == 0


def test_user_containerd_config_survives(node) -> None:
    text = node["run"]("cat /etc/containerd/config.toml")
    assert "oom_score = -999" in text
    assert 'sandbox_image = "registry.site.local/pause:3.9"' in text
    assert "conf.d" in text  # nvidia-ctk added an import of its drop-in, nothing else
    assert "nvidia" in node["run"]("cat /etc/containerd/conf.d/99-nvidia.toml")
    assert node["run"]("systemctl is-active containerd").strip() == "active"


@pytest.mark.parametrize(
    ("fault", "check", "words"),
    [
        ({"ecc_uncorrectable": {3: 2}}, "ecc", "volatile uncorrectable"),
        ({"missing_gpus": 1}, "gpu-count", "7 GPUs"),
        ({"fabric_in_progress": True}, "fabric", "fabric"),
    ],
)
def test_fault_profiles_fail_verify_naming_the_fault(node, fault, check, words) -> None:
    from gpuprov.testbed.standins import install_sim_profile, render_profile

    try:
        install_sim_profile(node["run"], render_profile(PROFILE, **fault))
        report = verify(node, check=False)
        failed = failed_checks(report)
        assert not report["ok"]
        assert check in failed, failed
        assert words in failed[check]
    finally:
        install_sim_profile(node["run"], render_profile(PROFILE))


def test_fabric_manager_of_another_branch_is_named_then_repaired(node) -> None:
    """Fault: the 570 branch's fabric manager forced onto the 580 host (dpkg, past its
    dependencies and the hold: apt itself would refuse). verify names it; apply puts
    580's back."""
    run = node["run"]
    run(
        "cd /tmp && apt-get download nvidia-fabricmanager-570=570.133.20-1 && "
        # dpkg removes the held 580 package in favour of the conflicting 570 one
        "dpkg -i --force-depends,hold nvidia-fabricmanager-570_570.133.20-1_amd64.deb && "
        "(systemctl restart nvidia-fabricmanager || true)"
    )
    report = verify(node, check=False)
    failed = failed_checks(report)
    assert "fabricmanager-version" in failed, failed
    assert failed["fabricmanager-version"].startswith(
        "nvidia-fabricmanager-570 570.133.20-1 installed instead of nvidia-fabricmanager"
    ), failed
    assert not report["ok"]

    result = as_json(gpuprov("apply", str(node["inventory"]), "--yes", "-o", "json"))
    assert result["summary"]["failed"] == 0, result
    report = verify(node)
    assert report["ok"], failed_checks(report)
    assert "nvidia-fabricmanager" in run("apt-mark showhold").split()


def test_secure_boot_on_is_refused_by_preflight(node) -> None:
    from gpuprov.testbed.standins import install_sim_profile, render_profile

    try:
        install_sim_profile(node["run"], render_profile(PROFILE, secure_boot=True))
        proc = gpuprov("plan", str(node["inventory"]), check=False)
        assert proc.returncode == 1
        assert "Secure Boot" in proc.stdout + proc.stderr
    finally:
        install_sim_profile(node["run"], render_profile(PROFILE))
