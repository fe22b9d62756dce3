"""A real OpenSSH server on 127.0.0.1 for engine tests (root only).

Temporary until the light hosts (gpuprov.testbed.lighthosts) are on main: it runs on
this machine's real root filesystem, so tests point deploys at a scratch directory
through the `gpuprov_root` host var.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LoopbackSshd:
    port: int
    pid: int
    client_key: Path
    host_pub: str  # "ssh-ed25519 AAAA..."

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.waitpid(self.pid, os.WNOHANG)
                os.kill(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                return
            time.sleep(0.05)


def start(workdir: Path, addresses: tuple[str, ...] = ("127.0.0.1",)) -> LoopbackSshd:
    """sshd listening on `addresses` (loopback 127.0.0.0/8 only), one port for all."""
    workdir.mkdir(parents=True, exist_ok=True)
    hostkey, client = workdir / "host_ed25519", workdir / "client_ed25519"
    for key in (hostkey, client):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    auth = workdir / "authorized_keys"
    auth.write_text((workdir / "client_ed25519.pub").read_text())
    auth.chmod(0o600)
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "".join(f"ListenAddress {a}\n" for a in addresses) + f"Port {port}\nHostKey {hostkey}\n"
        f"AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"PidFile {workdir / 'sshd.pid'}\nStrictModes no\nSubsystem sftp internal-sftp\n"
        "MaxStartups 200\nMaxSessions 100\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    with open(workdir / "sshd.log", "w") as log:
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=log)
    server = LoopbackSshd(port, proc.pid, client, (workdir / "host_ed25519.pub").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(workdir / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("sshd did not start listening")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    if os.geteuid() != 0:
        pytest.skip("needs root to run sshd")
    # three loopback addresses, so tests can have several hosts on one server
    server = start(tmp_path_factory.mktemp("sshd"), ("127.0.0.1", "127.0.0.2", "127.0.0.3"))
    try:
        yield server
    finally:
        server.stop()
