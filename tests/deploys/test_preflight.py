"""Preflight's decisions on fact data (no host needed) and the fact's parser."""

from __future__ import annotations

from dataclasses import replace

import pytest
from gpuprov.deploys.preflight import review
from gpuprov.deploys.preflight_fact import PreflightData, parse

from gpuprov.engine.refusal import HostRefused
from gpuprov.inventory.model import DriverPin, Host, SSHSettings, Stack

# As `lspci -Dnn -d 10de:` prints an HGX H100 baseboard (two of eight GPUs, one of four
# NVSwitches shown) and an unrelated NVIDIA audio function.
OUTPUT = """\
os_id=ubuntu
os_version=22.04
os_name=Ubuntu 22.04.4 LTS
kernel=5.15.0-105-generic
arch=x86_64
headers=0
headers_candidate=5.15.0-105.115
secure_boot=SecureBoot disabled
nouveau=1
driver_installed=
free_kb=52428800
pci=0000:18:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB HBM3] [10de:2330] (rev a1)
pci=0000:2a:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB HBM3] [10de:2330] (rev a1)
pci=0000:05:00.0 Bridge [0680]: NVIDIA Corporation GH100 [H100 NVSwitch] [10de:22a3] (rev a1)
pci=0000:65:00.1 Audio device [0403]: NVIDIA Corporation Device [10de:22ba] (rev a1)
""".splitlines()


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


def test_parse_reads_every_field():
    d = parse(OUTPUT)
    assert (d.os_key, d.kernel, d.headers_installed) == ("ubuntu2204", "5.15.0-105-generic", False)
    assert d.headers_candidate == "5.15.0-105.115"
    assert d.secure_boot is False and d.nouveau_loaded is True
    assert d.driver_installed is None and d.free_bytes == 50 * 1024**3
    assert [g.pci_id for g in d.gpus] == ["10de:2330", "10de:2330"]
    assert d.gpus[0].name == "NVIDIA Corporation GH100 [H100 SXM5 80GB HBM3]"
    assert [s.slot for s in d.nvswitches] == ["0000:05:00.0"]
    assert d.as_dict()["os_key"] == "ubuntu2204"


@pytest.mark.parametrize(
    ("os_id", "version", "key"),
    [("rocky", "9.4", "rhel9"), ("rhel", "9.3", "rhel9"), ("debian", "12", "debian12")],
)
def test_os_key(os_id, version, key):
    assert PreflightData(os_id=os_id, os_version=version).os_key == key


def test_installable_headers_and_nouveau_are_warnings():
    warnings = review(parse(OUTPUT), host())
    assert any("linux-headers-5.15.0-105-generic" in w for w in warnings)
    assert any("nouveau" in w for w in warnings)


@pytest.mark.parametrize(
    ("change", "reason", "check"),
    [
        ({"os_id": "centos", "os_version": "7", "os_name": "CentOS 7"}, "unsupported OS", "os"),
        ({"free_bytes": 2 * 10**9}, "2.0 GB free", "disk"),
        ({"headers_candidate": None}, "no kernel headers", "headers"),
        ({"secure_boot": True}, "Secure Boot is on", "secure_boot"),
    ],
)
def test_refusals_are_one_line_with_a_fix(change, reason, check):
    facts = replace(parse(OUTPUT), **change)
    with pytest.raises(HostRefused) as exc:
        review(facts, host())
    assert reason in exc.value.reason and exc.value.fix
    assert "\n" not in str(exc.value)
    # an operator override turns exactly that refusal into a warning
    warnings = review(facts, host(gpuprov_preflight_ignore=[check]))
    assert any(reason in w and "ignored" in w for w in warnings)


def test_secure_boot_is_fine_without_a_driver_to_sign():
    facts = replace(parse(OUTPUT), secure_boot=True)
    assert review(facts, replace(host(), stack=None, role="mirror")) is not None
