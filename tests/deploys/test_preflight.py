"""Preflight's decisions on HostState data (no host needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from gpuprov.deploys.preflight import CHECKS, pci_problem, review

from gpuprov.engine.refusal import HostRefused, Refusal
from gpuprov.facts.host_state import HostStateData
from gpuprov.inventory.model import DriverPin, Host, SSHSettings, Stack
from gpuprov.parsers.lspci import parse_lspci
from gpuprov.parsers.system import parse_os_release
from gpuprov.tables import SystemProfile

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lspci"
HGX = SystemProfile(
    name="hgx-h100-8",
    description="HGX H100 8-GPU",
    gpu_model="NVIDIA H100 80GB HBM3",
    gpu_pci_ids=("10de:2330",),
    gpu_count=8,
    nvswitch=True,
    nvswitch_pci_ids=("10de:22a3",),
    nvswitch_count=4,
)


def state(**changes: object) -> HostStateData:
    base = HostStateData(
        os=parse_os_release('ID=ubuntu\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n'),
        kernel="5.15.0-105-generic",
        headers_present=True,
        secure_boot=False,
        pci_devices=parse_lspci((FIXTURES / "hgx-h100-8_lspci-nn.txt").read_text()),
        root_free_bytes=50 * 10**9,
    )
    return replace(base, **changes)


def host(**vars: object) -> Host:
    return Host(
        name="gpu001",
        address="10.0.1.1",
        role="gpu",
        group="hgx",
        ssh=SSHSettings(),
        stack=Stack(driver=DriverPin("580", "580.95.05")),
        profile=None,
        vars=dict(vars),
    )


def test_a_healthy_host_passes_quietly():
    found = review(state(), host())
    assert found.refusals == [] and found.warnings == []
    assert pci_problem(state(), HGX) is None


def test_installable_headers_and_nouveau_are_warnings():
    found = review(state(headers_present=False, nouveau_loaded=True), host(), "5.15.0-105.115")
    assert found.refusals == []
    warnings = found.warnings
    assert any("linux-headers-5.15.0-105-generic not installed" in w for w in warnings)
    assert any("nouveau" in w for w in warnings)


@pytest.mark.parametrize(
    ("change", "reason", "check"),
    [
        ({"os": parse_os_release("ID=centos\nVERSION_ID=7\n")}, "unsupported OS", "os"),
        ({"root_free_bytes": 2 * 10**9}, "2.0 GB free", "disk"),
        ({"headers_present": False}, "no kernel headers", "headers"),
        ({"secure_boot": True}, "Secure Boot is on", "secure_boot"),
    ],
)
def test_refusals_are_one_line_with_a_fix(change, reason, check):
    facts = state(**change)
    [refusal] = review(facts, host()).refusals
    assert reason in refusal.reason and refusal.fix and refusal.code == check
    assert "\n" not in str(HostRefused.every([refusal]))
    # the operator override turns exactly that refusal into a warning
    found = review(facts, host(gpuprov_preflight_ignore=[check]))
    assert found.refusals == []
    assert any(reason in w and "ignored" in w for w in found.warnings)


def test_every_fault_at_once_most_fundamental_first():
    """The issue's three round trips, in one: a Debian host listed as Ubuntu HGX H100,
    without headers, without GPUs, short of disk, Secure Boot on, nouveau loaded."""
    debian = parse_os_release('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    facts = state(
        os=debian, headers_present=False, pci_devices=[], root_free_bytes=3 * 10**9,
        secure_boot=True, nouveau_loaded=True,
    )  # fmt: skip
    me = replace(host(), profile="hgx-h100-8", stack=Stack(DriverPin("580", "580.95.05"), os="ubuntu2204"))  # fmt: skip
    found = review(facts, me)
    assert [r.code for r in found.refusals] == [
        "stack_os",
        "gpus",
        "disk",
        "headers",
        "secure_boot",
    ]
    stack_os, gpus, disk, headers, secure_boot = found.refusals
    assert stack_os.reason == "the inventory says stack.os ubuntu2204, the host runs debian12"
    assert gpus.reason.startswith("PCI bus shows no NVIDIA GPU")
    assert disk.reason == "only 3.0 GB free on / (need 10 GB)"
    assert "linux-headers-5.15.0-105-generic" in headers.fix
    assert all(r.fix for r in found.refusals)
    assert any("nouveau" in w for w in found.warnings)  # warnings are kept beside refusals
    # the host is refused once, carrying all of them, on one line for logs
    exc = HostRefused.every(found.refusals)
    assert exc.refusals == found.refusals and "\n" not in str(exc)
    assert str(exc).startswith("5 problems: [stack_os] the inventory says")
    # ignoring some leaves the others, still in order
    me.vars["gpuprov_preflight_ignore"] = ["gpus", "headers"]
    found = review(facts, me)
    assert [r.code for r in found.refusals] == ["stack_os", "disk", "secure_boot"]
    assert sum("ignored" in w for w in found.warnings) == 2


def test_an_unsupported_os_comes_before_everything():
    facts = state(
        os=parse_os_release("ID=debian\nVERSION_ID=10\n"), headers_present=False,
        root_free_bytes=10**9,
    )  # fmt: skip
    codes = [r.code for r in review(facts, replace(host(), profile="hgx-b200-8")).refusals]
    assert codes == ["os", "gpus", "disk", "headers"]
    assert codes == sorted(codes, key=CHECKS.index)


def test_a_single_refusal_reads_as_before():
    exc = HostRefused("no room", "make room")
    assert str(exc) == "no room — make room" and exc.reason == "no room"
    assert exc.refusals == [Refusal("no room", "make room", None)]


def test_secure_boot_does_not_matter_without_a_driver():
    mirror = replace(host(), stack=None, role="mirror")
    found = review(state(secure_boot=True), mirror)
    assert found.refusals == [] and found.warnings == []


def test_gpus_missing_from_the_bus():
    devices = parse_lspci((FIXTURES / "hgx-h100-8_lspci-nn.txt").read_text())
    one_gpu_gone = [d for d in devices if d.slot != "18:00.0"]
    reason, fix = pci_problem(state(pci_devices=one_gpu_gone), HGX)
    assert "7 GPUs" in reason and "expects 8" in reason and fix
    reason, _ = pci_problem(state(pci_devices=[]), HGX)
    assert reason.startswith("PCI bus shows no NVIDIA GPU")
    reason, fix = pci_problem(state(pci_devices=None), HGX)
    assert "lspci is not installed" in reason and fix == "install pciutils"


def test_profile_from_the_data_tables():
    hgx = replace(host(), profile="hgx-h100-8")
    assert review(state(), hgx).refusals == []
    [refusal] = review(state(), replace(host(), profile="hgx-b200-8")).refusals
    assert "profile hgx-b200-8 expects 8" in refusal.reason and refusal.code == "gpus"


@pytest.mark.parametrize("os_id", ["debian12", "debian13"])
def test_debian_releases_pass_the_os_check(os_id):
    # The real /etc/os-release of each test bed rootfs.
    text = (Path(__file__).parents[1] / "fixtures" / "os-release" / os_id).read_text()
    release = parse_os_release(text)
    assert release.os_key == os_id
    assert not [r for r in review(state(os=release), host()).refusals if r.code == "os"]
