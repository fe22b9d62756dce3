"""An install cut short, on a real light host (issue 13, item 20): a package left unpacked
but not configured (`dpkg --unpack`) is found in the one fact round trip and finished
with `dpkg --configure -a`, named in the plan; a held dpkg lock is waited for."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gpuprov.deploys.dpkg_health import dpkg_health  # noqa: E402
from mirror_harness import apply, cluster_of  # noqa: E402

from gpuprov.facts.host_state import SCRIPT, parse_host_state  # noqa: E402
from gpuprov.parsers.dpkg_state import parse_dpkg_state  # noqa: E402

pytestmark = pytest.mark.host

if os.geteuid() != 0:
    pytest.skip("light hosts need root", allow_module_level=True)

PKG = "gpuprov-cut-short"


@pytest.fixture(scope="module")
def lab():
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(1, names=["node01"]) as lab:
        yield lab


def unpacked_package(lab, tmp_path: Path) -> None:
    """A real .deb whose postinst writes a marker, unpacked on the host, not configured
    (what an SSH drop between dpkg's unpack and configure phases leaves)."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {PKG}\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: gpuprov tests <t@gpuprov.invalid>\nDescription: left unconfigured\n"
    )
    postinst = root / "DEBIAN" / "postinst"
    postinst.write_text("#!/bin/sh\nset -e\ntouch /var/tmp/cut-short-configured\n")
    postinst.chmod(0o755)
    host = lab.hosts[0]
    deb = Path(host.root_dir) / "var/tmp/cut-short.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", root, deb], check=True,
                   capture_output=True)  # fmt: skip
    lab.exec(host.name, "rm -f /var/tmp/cut-short-configured; dpkg --unpack /var/tmp/cut-short.deb")


def test_unconfigured_package_is_found_and_configured(lab, tmp_path: Path):
    host = lab.hosts[0]
    unpacked_package(lab, tmp_path)
    # The parser on dpkg's real report, and in the one HostState round trip.
    audit = lab.exec(host.name, "dpkg --audit", check=False).stdout
    assert PKG in audit
    assert parse_dpkg_state(audit).interrupted == [PKG]
    state = parse_host_state(lab.exec(host.name, SCRIPT).stdout)
    assert state.dpkg is not None and state.dpkg.interrupted == [PKG]

    cluster = cluster_of(lab.write_inventory(tmp_path / "inventory.yaml"))
    first = apply(cluster, host.name, (dpkg_health, {}))
    assert first.planned == [
        f"dpkg health | dpkg was interrupted ({PKG} not configured): dpkg --configure -a "
        "(waits up to 300 s for the lock)"
    ], first.planned
    assert first.changed == 1
    assert lab.exec(host.name, "dpkg --audit").stdout == ""
    status = lab.exec(host.name, f"dpkg-query -W -f='${{Status}}' {PKG}").stdout
    assert status == "install ok installed"
    lab.exec(host.name, "test -e /var/tmp/cut-short-configured")  # its postinst ran

    again = apply(cluster, host.name, (dpkg_health, {}))
    assert again.planned == [] and again.changed == 0
    lab.exec(host.name, f"dpkg --purge {PKG}")


def test_held_lock_is_named_and_waited_for(lab, tmp_path: Path):
    host = lab.hosts[0]
    # A process holding dpkg's frontend lock for 6 s, as a dpkg cut off from its SSH
    # session would (the same fcntl lock dpkg and apt take).
    hold = (
        "import fcntl, os, time; fd = os.open('/var/lib/dpkg/lock-frontend', os.O_RDWR); "
        "fcntl.lockf(fd, fcntl.LOCK_EX); open('/var/tmp/lock-held', 'w').close(); time.sleep(6)"
    )
    lab.exec(host.name, "rm -f /var/tmp/lock-held")
    lab.exec(host.name, f'nohup python3 -c "{hold}" >/dev/null 2>&1 &')
    deadline = time.monotonic() + 10
    while lab.exec(host.name, "test -e /var/tmp/lock-held", check=False).returncode:
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.05)
    state = parse_host_state(lab.exec(host.name, SCRIPT).stdout)
    assert state.dpkg is not None and list(state.dpkg.lock_holders.values()) == [
        "/var/lib/dpkg/lock-frontend"
    ]
    cluster = cluster_of(lab.write_inventory(tmp_path / "inventory.yaml"))
    started = time.monotonic()
    applied = apply(cluster, host.name, (dpkg_health, {}))
    [name] = applied.planned
    assert name.startswith("dpkg health | dpkg's lock is held by pid "), name
    assert applied.changed == 1
    assert time.monotonic() - started > 2  # it waited for the holder, then ran
    assert lab.exec(host.name, "dpkg --audit").stdout == ""
