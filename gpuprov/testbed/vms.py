"""TEST BED: qemu VMs running the shared Debian 12 (or, with suite="trixie", Debian 13) image with systemd, under software
emulation (KVM does not work on these machines: never -enable-kvm).

Each VM boots the rootfs's kernel and initrd directly, from a qcow2 copy-on-write overlay
over the cached raw image, plus a small read-only "seed" disk with its own host key,
hostname, network settings and authorized keys, copied over / at boot by a unit baked
into the image (rootfs.py). NIC 1: user-mode network with SSH forwarded from a free
127.0.0.1 port. NIC 2: a tap on a per-lab bridge, so VMs reach each other and this
machine (.1) on 10.213.N.0/24 with static addresses.

Used by tests (marker `vm`) and the local-lab demo, never on real clusters.
GPUPROV_KEEP_VMS=1 leaves the VMs running at the end and prints how to ssh in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

from gpuprov.testbed import netalloc, teardown
from gpuprov.testbed.labbase import NetworkLab
from gpuprov.testbed.lighthosts import _ids, _keypair
from gpuprov.testbed.rootfs import (
    SEED_LABEL,
    SUITE,
    TEST_USER,
    cache_dir,
    ensure_disk_image,
    ensure_rootfs,
    kernel_and_initrd,
)

# Under TCG every zeroed page and every console character costs: no init_on_alloc page
# clearing, no mitigations, a quiet kernel (systemd still logs units to the console).
KERNEL_CMDLINE = (
    "root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.firstboot=off panic=-1 "
    "init_on_alloc=0 mitigations=off nowatchdog quiet systemd.show_status=1"
)


@dataclass
class VM:
    name: str
    address: str  # on the lab's private network
    ssh_port: int  # 127.0.0.1:ssh_port -> VM port 22
    tap: str
    dir: Path
    console_log: Path
    lab: VMLab = field(repr=False)
    pid: int | None = None
    host_key_pub: str = ""
    boot_seconds: float | None = None  # launch to SSH answering (first boot)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def ssh(
        self, cmd: str, *, user: str = "root", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", *self.lab.ssh_options(), "-p", str(self.ssh_port), f"{user}@127.0.0.1", cmd],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def boot_id(self) -> str:
        out = self.ssh("cat /proc/sys/kernel/random/boot_id", timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"{self.name}: no boot id: {out.stderr.strip()}")
        return out.stdout.strip()

    def reboot(self, timeout: float | None = None) -> None:
        """`systemctl reboot` in the VM; returns once SSH answers from the new boot."""
        before = self.boot_id()
        self.ssh("systemctl reboot", timeout=60)  # the connection may drop: ignore its result
        deadline = time.monotonic() + (timeout or self.lab.boot_timeout)
        while time.monotonic() < deadline:
            if self.lab._ssh_ready(self):
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    if self.boot_id() != before:
                        return
            time.sleep(2)
        raise RuntimeError(
            f"{self.name} did not come back from reboot; console: {self.console_log}"
        )


class VMLab(NetworkLab):
    """N qemu VMs with SSH on localhost and a private network; a context manager."""

    ssh_timeouts = (20, 5, 6)  # software-emulated guests answer slowly

    def __init__(
        self,
        count: int,
        *,
        memory_mb: int = 1024,
        cpus: int = 1,
        boot_timeout: float = 240,
        names: Sequence[str] | None = None,
        name_prefix: str = "vm",
        prefix: str = "gpv",
        subnet: int | None = None,
        keep: bool | None = None,
        log_dir: Path | None = None,
        suite: str = SUITE,
        disk_size: str | None = None,
    ) -> None:
        if names is not None and len(names) != count:
            raise ValueError(f"{len(names)} names given for {count} VMs")
        self.count = count
        self.names = list(names) if names else [f"{name_prefix}{i + 1:02d}" for i in range(count)]
        self.memory_mb, self.cpus, self.boot_timeout = memory_mb, cpus, boot_timeout
        self.prefix = prefix
        self.suite = suite  # the test bed's Debian release the VMs boot (rootfs.SUITES)
        self.disk_size = disk_size  # None: rootfs.DISK_SIZE
        self._subnet_request = subnet
        self.keep = os.environ.get("GPUPROV_KEEP_VMS") == "1" if keep is None else keep
        self._log_parent = log_dir or cache_dir() / "vmlabs"
        self.vms: list[VM] = []
        self._servers: list[ThreadingHTTPServer] = []
        self._lock = threading.RLock()
        self._closed = False
        self.slot: netalloc.Slot | None = None

    def start(self) -> None:
        rootfs = ensure_rootfs(suite=self.suite)
        if self.disk_size:
            base = ensure_disk_image(suite=self.suite, size=self.disk_size)
        else:
            base = ensure_disk_image(suite=self.suite)
        teardown.register(self)
        try:
            self.slot = slot = netalloc.allocate("vm", self._subnet_request)
            self._log_parent.mkdir(parents=True, exist_ok=True)
            # Logs stay after teardown (in dir); disks go (in dir/scratch).
            self.dir = (
                self._log_parent
                / f"{time.strftime('%Y%m%d-%H%M%S')}-slot{slot.number}-{os.getpid()}"
            )
            self.scratch = self.dir / "scratch"
            self.scratch.mkdir(parents=True)
            slot.workdir = str(self.scratch)
            slot.save()
            _prune(self._log_parent, keep=10)
            netalloc.run("ip", "link", "add", self.bridge, "type", "bridge")
            slot.links.append(self.bridge)
            slot.save()
            netalloc.run("ip", "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
            netalloc.run("ip", "link", "set", self.bridge, "up")
            self.key_path = self.scratch / "id_ed25519"
            private, self.public_key = _keypair()
            self.key_path.write_bytes(private)
            self.key_path.chmod(0o600)
            for i, name in enumerate(self.names):
                self.vms.append(self._make_vm(i, name))
            self.known_hosts_path = self.scratch / "known_hosts"
            self.known_hosts_path.write_text(
                "".join(
                    f"[127.0.0.1]:{vm.ssh_port},{vm.address},{vm.name} {vm.host_key_pub}\n"
                    for vm in self.vms
                )
            )
            for vm in self.vms:
                self._seed(vm, rootfs)
                self._launch(vm, rootfs, base)
            self._wait_ready(self.vms)
        except BaseException:
            self.close()
            raise

    def _make_vm(self, i: int, name: str) -> VM:
        assert self.slot
        tap = f"{self.prefix}{self.slot.number}t{i}"
        netalloc.run("ip", "tuntap", "add", "dev", tap, "mode", "tap")
        self.slot.links.append(tap)
        self.slot.save()
        netalloc.run("ip", "link", "set", tap, "master", self.bridge, "up")
        vmdir = self.scratch / name
        vmdir.mkdir()
        private, public = _keypair()
        (vmdir / "host_key").write_bytes(private)
        vm = VM(
            name,
            self.slot.ip(10 + i),
            _free_port(),
            tap,
            vmdir,
            self.dir / f"console-{name}.log",
            self,
        )
        vm.host_key_pub = public
        return vm

    def _seed(self, vm: VM, rootfs: Path) -> None:
        """The VM's own files, on a small ext4 disk the image's seed unit copies over /."""
        files = vm.dir / "seed" / "files"
        etc = files / "etc"
        (etc / "ssh").mkdir(parents=True)
        (etc / "network").mkdir()
        key = etc / "ssh" / "ssh_host_ed25519_key"
        shutil.copy(vm.dir / "host_key", key)
        key.chmod(0o600)
        key.with_suffix(".pub").write_text(vm.host_key_pub + "\n")
        (etc / "ssh" / "ssh_known_hosts").write_text(
            "".join(f"{v.address},{v.name} {v.host_key_pub}\n" for v in self.vms)
        )
        (etc / "hostname").write_text(vm.name + "\n")
        (etc / "hosts").write_text(
            f"127.0.0.1 localhost\n{self.bridge_address} control\n"
            + "".join(f"{v.address} {v.name}\n" for v in self.vms)
        )
        (etc / "network" / "interfaces").write_text(
            "# TEST BED: eth0 = user-mode NAT (SSH forward), eth1 = the lab's private network\n"
            # qemu's user-mode network has fixed addresses: static, so no DHCP wait at boot;
            # allow-hotplug (no `auto`) so ifupdown-pre skips a 40 s `udevadm settle` under TCG.
            "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet static\n"
            "    address 10.0.2.15/24\n    gateway 10.0.2.2\n\n"
            f"allow-hotplug eth1\niface eth1 inet static\n    address {vm.address}/24\n"
        )
        uid, gid = _ids(rootfs, TEST_USER)
        for home, owner, mode in (
            (files / "root", (0, 0), 0o700),
            (files / "home" / TEST_USER, (uid, gid), 0o755),
        ):
            (home / ".ssh").mkdir(parents=True, mode=0o700)
            (home / ".ssh" / "authorized_keys").write_text(self.public_key + "\n")
            (home / ".ssh" / "authorized_keys").chmod(0o600)
            home.chmod(mode)
            for path in (home, home / ".ssh", home / ".ssh" / "authorized_keys"):
                os.chown(path, *owner)
        for d in (files, etc, etc / "ssh", etc / "network", files / "home"):
            d.chmod(0o755)
        image = vm.dir / "seed.img"
        netalloc.run(
            "mke2fs",
            "-q",
            "-t",
            "ext4",
            "-L",
            SEED_LABEL,
            "-d",
            str(vm.dir / "seed"),
            str(image),
            "16M",
        )

    def _launch(self, vm: VM, rootfs: Path, base: Path) -> None:
        assert self.slot
        overlay = vm.dir / "disk.qcow2"
        netalloc.run(
            "qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(overlay)
        )
        kernel, initrd = kernel_and_initrd(rootfs)
        n, i = self.slot.number, self.vms.index(vm)
        argv = [
            "qemu-system-x86_64", "-name", vm.name, "-m", str(self.memory_mb), "-smp", str(self.cpus),
            "-nodefaults", "-no-user-config", "-display", "none",  # no floppy/cdrom/VGA to probe
            "-chardev", f"file,id=console,path={vm.console_log},append=on", "-serial", "chardev:console",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", KERNEL_CMDLINE,
            "-drive", f"file={overlay},if=virtio,format=qcow2",
            "-drive", f"file={vm.dir / 'seed.img'},if=virtio,format=raw,readonly=on",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{vm.ssh_port}-:22",
            "-device", f"virtio-net-pci,netdev=n0,mac=52:54:00:{n:02x}:{i:02x}:01",
            "-netdev", f"tap,id=n1,ifname={vm.tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n1,mac=52:54:00:{n:02x}:{i:02x}:02",
        ]  # fmt: skip
        log = open(self.dir / f"qemu-{vm.name}.log", "ab")  # noqa: SIM115 (child owns it)
        vm.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        vm.pid = vm.proc.pid
        self.slot.pids.append(vm.pid)
        self.slot.save()

    def _ssh_ready(self, vm: VM) -> bool:
        # User-mode networking accepts the connection itself: wait for sshd's banner.
        try:
            with socket.create_connection(("127.0.0.1", vm.ssh_port), timeout=2) as sock:
                sock.settimeout(5)
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def _wait_ready(self, vms: Sequence[VM]) -> None:
        started = time.monotonic()
        pending = list(vms)
        while pending:
            for vm in list(pending):
                if vm.proc is not None and vm.proc.poll() is not None:
                    log = (self.dir / f"qemu-{vm.name}.log").read_text(errors="replace")
                    raise RuntimeError(f"VM {vm.name}: qemu exited: {log[-2000:]}")
                if self._ssh_ready(vm) and vm.ssh("true", timeout=60).returncode == 0:
                    vm.boot_seconds = time.monotonic() - started
                    pending.remove(vm)
            if pending and time.monotonic() - started > self.boot_timeout:
                logs = ", ".join(str(vm.console_log) for vm in pending)
                raise RuntimeError(
                    f"VMs not answering SSH after {self.boot_timeout:.0f} s; consoles: {logs}"
                )
            if pending:
                time.sleep(2)

    def inventory_hosts(self) -> list[tuple[str, str]]:
        return [(vm.name, vm.address) for vm in self.vms]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            teardown.unregister(self)
            for server in self._servers:
                server.shutdown()
                server.server_close()
            if self.keep and self.vms:
                print(f"\nGPUPROV_KEEP_VMS=1: VMs left running (logs in {self.dir}):")
                for vm in self.vms:
                    opts = " ".join(self.ssh_options())
                    print(f"  {vm.name} (pid {vm.pid}): ssh {opts} -p {vm.ssh_port} root@127.0.0.1")
                print(f"  stop them: kill {' '.join(str(vm.pid) for vm in self.vms)}")
                if self.slot is not None:  # the slot stays taken while the first VM lives
                    self.slot.owner = self.vms[0].pid or self.slot.owner
                    self.slot.save()
                return
            for vm in self.vms:
                if vm.proc is not None and vm.proc.poll() is None:
                    vm.proc.terminate()
            for vm in self.vms:
                if vm.proc is not None:
                    try:
                        vm.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        vm.proc.kill()
                        vm.proc.wait()
                vm.pid = None
            if self.slot is not None:
                netalloc.cleanup_stale(self.slot)  # taps, bridge, scratch disks
                self.slot.release()

    # -- what tests use -------------------------------------------------------------

    def vm(self, name: str) -> VM:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prune(parent: Path, keep: int) -> None:
    """Old labs' log directories: keep the newest `keep` (scratch disks are gone already)."""
    dirs = sorted((d for d in parent.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    for old in dirs[:-keep]:
        if not (old / "scratch").exists():
            shutil.rmtree(old, ignore_errors=True)
