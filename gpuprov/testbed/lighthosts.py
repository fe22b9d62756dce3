"""TEST BED: light hosts, real sshd servers each in its own network namespace.

Each host is the shared Debian rootfs (rootfs.py) under an overlayfs upper dir of its own,
with its own IP on a per-lab bridge (veth pairs), private /proc, read-only /sys, its own
/dev, /dev/pts and /run, and its own ed25519 host key. sshd runs as PID 1 of a private PID
namespace, so killing it takes every session on the host down with it, as a power cut
would. The bridge's host side (.1) belongs to this machine: the control node reaches
hosts directly by IP and hosts reach HTTP servers the lab serves there.

No systemd and no kernel modules (there is no /proc/modules inside): what needs those
needs a VM (vms.py). Used by tests (marker `host`) and the local-lab demo, never on real
clusters.

    with LightHostLab(3) as lab:
        subprocess.run(["ssh", *lab.ssh_options(), f"root@{lab.hosts[0].address}", "true"])
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gpuprov.testbed import netalloc, teardown
from gpuprov.testbed.labbase import NetworkLab
from gpuprov.testbed.rootfs import TEST_USER, cache_dir, ensure_rootfs

# Runs inside `ip netns exec NS unshare --mount --uts --ipc --pid --fork`: $1 is the
# host's root, $2 its name.
_LAUNCH = r"""
set -e
R="$1"
mount -t proc proc "$R/proc"
mount -t sysfs -o ro sysfs "$R/sys"
mount -t tmpfs -o mode=0755,size=8m tmpfs "$R/dev"
for d in null zero full random urandom tty; do
  : > "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=0755,size=32m tmpfs "$R/run"
mkdir -p "$R/run/sshd" "$R/run/lock"
ip link set lo up
hostname "$2"
exec chroot "$R" /usr/sbin/sshd -D -e
"""


@dataclass
class LightHost:
    name: str
    address: str
    port: int
    netns: str
    pid: int | None  # sshd (PID 1 of the host's PID namespace); None while stopped
    root_dir: Path  # the merged overlay: the host's "/" as seen from this machine
    veth: str = ""  # host-side end on the bridge
    host_key_pub: str = ""


def _keypair() -> tuple[bytes, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode()


class LightHostLab(NetworkLab):
    """N sshd hosts on a private /24; a context manager that leaves nothing behind."""

    def __init__(
        self,
        count: int,
        *,
        prefix: str | None = None,
        subnet: int | None = None,
        names: Sequence[str] | None = None,
        name_prefix: str = "node",
        workdir: Path | None = None,
        start_timeout: float = 30.0,
        keep: bool | None = None,
        disk_mb: Mapping[str, int] | None = None,
    ) -> None:
        if names is not None and len(names) != count:
            raise ValueError(f"{len(names)} names given for {count} hosts")
        if not 1 <= count <= 240:
            raise ValueError("a light-host lab has 1 to 240 hosts")
        self.prefix = prefix or "gpt"
        if len(self.prefix) > 6 or not self.prefix.isalnum():
            raise ValueError("prefix: up to 6 letters/digits (interface names are short)")
        self.count = count
        self.names = list(names) if names else [f"{name_prefix}{i + 1:02d}" for i in range(count)]
        self._subnet_request = subnet
        self._workdir_parent = workdir
        self.start_timeout = start_timeout
        self.keep = os.environ.get("GPUPROV_KEEP_HOSTS") == "1" if keep is None else keep
        # Hosts whose disk is a tmpfs of this many MiB: the overlay's writable layer lives
        # there, so `df /` inside the host shows that size (a real low-disk fault).
        self.disk_mb = dict(disk_mb or {})
        unknown = sorted(set(self.disk_mb) - set(self.names))
        if unknown or not all(isinstance(v, int) and 1 <= v <= 4096 for v in self.disk_mb.values()):
            raise ValueError(f"disk_mb: host names of this lab -> 1..4096 MiB, got {disk_mb!r}")
        self.hosts: list[LightHost] = []
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._servers: list[ThreadingHTTPServer] = []
        self._lock = threading.RLock()
        self._closed = False
        self.slot: netalloc.Slot | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        rootfs = ensure_rootfs()
        teardown.register(self)
        try:
            self.slot = slot = netalloc.allocate("light", self._subnet_request)
            parent = self._workdir_parent or cache_dir() / "labs"
            parent.mkdir(parents=True, exist_ok=True)
            self.workdir = Path(tempfile.mkdtemp(prefix=f"light{slot.number}-", dir=parent))
            slot.workdir = str(self.workdir)
            slot.save()
            self._make_bridge()
            self.key_path = self.workdir / "id_ed25519"
            private, public = _keypair()
            self.key_path.write_bytes(private)
            self.key_path.chmod(0o600)
            self.key_path.with_suffix(".pub").write_text(public + "\n")
            self.public_key = public
            for i, name in enumerate(self.names):
                self.hosts.append(self._make_host(i, name, rootfs))
            self.known_hosts_path = self.workdir / "known_hosts"
            self.known_hosts_path.write_text(
                "".join(f"{h.address} {h.host_key_pub}\n" for h in self.hosts)
            )
            for host in self.hosts:
                # Hosts trust each other's keys too (scp between hosts, mirror pulls).
                (host.root_dir / "etc/ssh/ssh_known_hosts").write_text(
                    self.known_hosts_path.read_text()
                )
                self._launch(host)
            self._wait_ready(self.hosts)
        except BaseException:
            self.close()
            raise

    def _make_bridge(self) -> None:
        assert self.slot
        netalloc.run("ip", "link", "add", self.bridge, "type", "bridge")
        self.slot.links.append(self.bridge)
        self.slot.save()
        netalloc.run("ip", "addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
        netalloc.run("ip", "link", "set", self.bridge, "up")

    def _make_host(self, i: int, name: str, rootfs: Path) -> LightHost:
        assert self.slot
        n = self.slot.number
        netns, veth, peer = (
            f"{self.prefix}{n}h{i}",
            f"{self.prefix}{n}v{i}",
            f"{self.prefix}{n}p{i}",
        )
        address = self.slot.ip(10 + i)
        hostdir = self.workdir / name
        layer = hostdir
        if name in self.disk_mb:
            layer = hostdir / "disk"
            layer.mkdir(parents=True)
            size = f"size={self.disk_mb[name]}m"
            netalloc.run("mount", "-t", "tmpfs", "-o", f"mode=0755,{size}", "tmpfs", str(layer))
            self.slot.mounts.append(str(layer))
            self.slot.save()
        upper, work, root = layer / "upper", layer / "work", hostdir / "root"
        for d in (upper, work, root):
            d.mkdir(parents=True)
        netalloc.run("ip", "netns", "add", netns)
        self.slot.netns.append(netns)
        self.slot.save()
        netalloc.run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        self.slot.links.append(veth)
        self.slot.save()
        netalloc.run("ip", "link", "set", peer, "netns", netns)
        netalloc.run("ip", "link", "set", veth, "master", self.bridge, "up")
        ns = ("ip", "-n", netns)
        netalloc.run(*ns, "link", "set", peer, "name", "eth0")
        netalloc.run(*ns, "addr", "add", f"{address}/24", "dev", "eth0")
        netalloc.run(*ns, "link", "set", "eth0", "up")
        netalloc.run(*ns, "link", "set", "lo", "up")
        opts = f"lowerdir={rootfs},upperdir={upper},workdir={work}"
        netalloc.run("mount", "-t", "overlay", "overlay", "-o", opts, str(root))
        self.slot.mounts.append(str(root))
        self.slot.save()
        host = LightHost(name, address, 22, netns, None, root, veth)
        self._personalise(host)
        return host

    def _personalise(self, host: LightHost) -> None:
        root = host.root_dir
        private, public = _keypair()
        key = root / "etc/ssh/ssh_host_ed25519_key"
        key.write_bytes(private)
        key.chmod(0o600)
        key.with_suffix(".pub").write_text(public + "\n")
        host.host_key_pub = public
        (root / "etc/hostname").write_text(host.name + "\n")
        (root / "etc/hosts").write_text(
            f"127.0.0.1 localhost\n{host.address} {host.name}\n"
            + "".join(f"{self.slot.ip(10 + i)} {n}\n" for i, n in enumerate(self.names))  # type: ignore[union-attr]
        )
        uid, gid = _ids(root, TEST_USER)
        for home, owner in ((root / "root", (0, 0)), (root / "home" / TEST_USER, (uid, gid))):
            auth = home / ".ssh" / "authorized_keys"
            auth.parent.mkdir(mode=0o700, exist_ok=True)
            auth.write_text(self.public_key + "\n")
            auth.chmod(0o600)
            os.chown(auth, *owner)
            os.chown(auth.parent, *owner)

    def _launch(self, host: LightHost) -> None:
        assert self.slot
        log = open(self.workdir / host.name / "sshd.log", "ab")  # noqa: SIM115 (child owns it)
        argv = [
            "ip",
            "netns",
            "exec",
            host.netns,
            "unshare",
            "--mount",
            "--uts",
            "--ipc",
            "--pid",
            "--fork",
        ]
        argv += ["--propagation", "private", "--kill-child", "/bin/sh", "-c", _LAUNCH, "sh"]
        proc = subprocess.Popen(
            [*argv, str(host.root_dir), host.name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C at the terminal reaches us, not sshd
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
        )
        log.close()
        self._procs[host.name] = proc
        self.slot.pids.append(proc.pid)
        self.slot.save()

    def _wait_ready(self, hosts: Sequence[LightHost]) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = list(hosts)
        while pending:
            for host in list(pending):
                proc = self._procs[host.name]
                if proc.poll() is not None:
                    log = (self.workdir / host.name / "sshd.log").read_text(errors="replace")
                    raise RuntimeError(f"light host {host.name}: sshd exited: {log[-2000:]}")
                if host.pid is None:
                    host.pid = _child_of(proc.pid)
                if host.pid is not None and _answers(host.address, host.port):
                    pending.remove(host)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"light hosts not answering SSH: {[h.name for h in pending]}")
            if pending:
                time.sleep(0.05)
        assert self.slot
        self.slot.pids += [h.pid for h in hosts if h.pid]
        self.slot.save()

    def inventory_hosts(self) -> list[tuple[str, str]]:
        return [(h.name, h.address) for h in self.hosts]

    def close(self) -> None:
        """Stop everything this lab started; safe to call twice and from a signal handler."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            teardown.unregister(self)
            for server in self._servers:
                server.shutdown()
                server.server_close()
            if self.keep and self.hosts:
                # Left for debugging; cleaned by a later allocation once the first host is gone.
                print(
                    f"light hosts kept in {self.workdir}: ssh {' '.join(self.ssh_options())} root@{self.hosts[0].address}"
                )
                if self.slot is not None:  # the slot stays taken while the first host lives
                    self.slot.owner = self.hosts[0].pid or self.slot.owner
                    self.slot.save()
                return
            self._stop(*self._procs)
            if self.slot is not None:
                netalloc.cleanup_stale(self.slot)
                self.slot.release()

    def _stop(self, *names: str) -> None:
        # Signal all first, then wait: a PID namespace takes a while to die, so in parallel.
        victims = []
        for name in names:
            host, proc = self.host(name), self._procs.pop(name, None)
            for pid in (host.pid, proc.pid if proc else None):
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            victims.append((host, proc))
        for host, proc in victims:
            if proc is not None:
                proc.wait()
            if host.pid is not None:
                _wait_gone(host.pid)
            host.pid = None

    # -- what tests use -------------------------------------------------------------

    def host(self, name: str) -> LightHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def kill(self, name: str) -> None:
        """Power cut: sshd and every session on the host die at once."""
        self._stop(name)

    def start_host(self, name: str) -> None:
        """Boot a killed host again (same address, key and disk)."""
        host = self.host(name)
        if host.pid is not None:
            return
        self._launch(host)
        self._wait_ready([host])

    def link_down(self, name: str) -> None:
        netalloc.run("ip", "link", "set", self.host(name).veth, "down")

    def link_up(self, name: str) -> None:
        netalloc.run("ip", "link", "set", self.host(name).veth, "up")

    def exec(
        self,
        name: str,
        cmd: str,
        *,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` as root inside the host (its namespaces and root), bypassing SSH."""
        host = self.host(name)
        if host.pid is not None:
            argv = ["nsenter", "-t", str(host.pid), "-m", "-n", "-p", "-u", "-i", "-r", "-w"]
        else:  # host is down: look at its disk from its network namespace
            argv = ["ip", "netns", "exec", host.netns, "chroot", str(host.root_dir)]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
        proc = subprocess.run(
            [*argv, "/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=timeout,
            input=input, env=env,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(f"{name}: {cmd!r} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc


def _ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise RuntimeError(f"user {user} missing from {root}/etc/passwd")


def _child_of(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        # A zombie sshd is reaped by its unshare parent, which we already waited for.
        time.sleep(0.01)


__all__ = ["LightHost", "LightHostLab"]
