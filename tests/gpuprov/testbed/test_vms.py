"""VMs: qemu under software emulation, real systemd, real reboots (slow tier, ~5 min here)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from gpuprov.testbed.vms import VMLab

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def lab():
    # This machine's 2 cores are shared by many agents: allow for a slow boot.
    with VMLab(2, memory_mb=1024, boot_timeout=420) as lab:
        print("first boot to SSH:", {vm.name: round(vm.boot_seconds or 0) for vm in lab.vms})
        yield lab


def test_vm_boots_systemd_and_answers_ssh_with_strict_host_keys(lab: VMLab) -> None:
    vm = lab.vms[0]
    out = vm.ssh("hostname; systemctl is-system-running --wait; systemctl --failed --no-legend")
    lines = out.stdout.split("\n")
    assert lines[0] == vm.name, out.stderr
    assert lines[1] in ("running", "degraded"), out.stdout
    out = vm.ssh("sudo -n id -u", user="gpuprov")
    assert (out.returncode, out.stdout.strip()) == (0, "0"), out.stderr
    assert vm.console_log.is_file() and vm.console_log.stat().st_size > 0
    keys = {v.ssh("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1] for v in lab.vms}
    assert len(keys) == 2  # each VM has its own host key


def test_vms_reach_each_other_and_the_control_node(lab: VMLab, tmp_path: Path) -> None:
    a, b = lab.vms

    subprocess.run(
        ["ssh", *lab.ssh_options(), "-p", str(a.ssh_port), "root@127.0.0.1",
         "umask 077; cat > /root/.ssh/id_ed25519"],
        input=lab.key_path.read_text(), text=True, check=True, timeout=120,
    )  # fmt: skip
    out = a.ssh(f"ssh -o BatchMode=yes -o StrictHostKeyChecking=yes root@{b.address} hostname")
    assert (out.returncode, out.stdout.strip()) == (0, b.name), out.stderr
    (tmp_path / "ping.txt").write_text("from the control node\n")
    url = lab.serve_http(tmp_path)
    out = b.ssh(f"curl -fsS --max-time 30 {url}ping.txt")
    assert (out.returncode, out.stdout) == (0, "from the control node\n"), out.stderr
    # The control node reaches VMs on the private network too (what an inventory uses).
    out = subprocess.run(
        ["ssh", *lab.ssh_options(), f"root@{b.address}", "hostname"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (out.returncode, out.stdout.strip()) == (0, b.name), out.stderr


def test_reboot_comes_back_with_a_new_boot_id(lab: VMLab) -> None:
    vm = lab.vms[1]
    before = vm.boot_id()
    started = time.monotonic()
    vm.reboot()
    print(f"reboot to SSH: {time.monotonic() - started:.0f} s")
    assert vm.boot_id() != before
    assert vm.ssh("hostname").stdout.strip() == vm.name
