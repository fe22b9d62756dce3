"""One SSH channel to the mirror host, with OpenSSH: a command, optionally fed a stream.

The import sends a whole bundle as ONE tar stream on the standard input of `tar -x` on
the far side (no per-file round trips, as SFTP would make), so the link runs at the
speed of the disk and the wire. OpenSSH is used rather than paramiko: it streams at
several hundred MB/s and honours the inventory's strict known_hosts file unchanged.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gpuprov.errors import ConnectError, GpuprovError, InputError
from gpuprov.inventory.model import Cluster, Host

SSH_FAILED = 255  # ssh's own exit status when it could not connect or lost the link
MAX_OUTPUT = 1024 * 1024  # bytes of stdout/stderr kept from a remote command


class RemoteError(GpuprovError):
    """The far side refused or failed (exit 1); carries its own message."""


@dataclass(frozen=True)
class Remote:
    host: Host
    known_hosts: Path

    @classmethod
    def mirror_of(cls, cluster: Cluster) -> Remote:
        host = cluster.mirror_host()
        if host is None:
            raise InputError(
                f"{cluster.path}: no mirror host (set cluster.mirror.host to a host with role mirror)"
            )
        return cls(host, cluster.known_hosts_path)

    def argv(self, script: str) -> list[str]:
        if shutil.which("ssh") is None:
            raise InputError("ssh not found (install openssh-client)")
        ssh = self.host.ssh
        opts = [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={ssh.connect_timeout}",
            # A dead link or a hung far side ends the stream within a minute.
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-p", str(ssh.port),
            "-l", ssh.user,
        ]  # fmt: skip
        if ssh.key is not None:
            opts += ["-i", str(ssh.key.expanduser()), "-o", "IdentitiesOnly=yes"]
        command = f"sh -c {shlex.quote(script)}"
        if ssh.sudo and ssh.user != "root":
            command = f"sudo -n {command}"  # a password prompt cannot share stdin with tar
        return ["ssh", *opts, "--", self.host.address, command]

    def run(
        self,
        script: str,
        *,
        feed: Callable[[IO[bytes]], None] | None = None,
        timeout: float | None = 120,
    ) -> str:
        """Run script on the host; feed() writes its standard input. Returns stdout.
        Connection failures raise ConnectError, a failing script RemoteError."""
        proc = subprocess.Popen(
            self.argv(script),
            stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out: dict[str, bytes] = {}

        def drain(name: str, stream: IO[bytes]) -> None:
            data = b""
            while block := stream.read(65536):
                if len(data) < MAX_OUTPUT:
                    data += block
            out[name] = data

        readers = [
            threading.Thread(target=drain, args=(n, s), daemon=True)
            for n, s in (("out", proc.stdout), ("err", proc.stderr))
        ]
        for reader in readers:
            reader.start()
        feed_error: BaseException | None = None
        try:
            if feed is not None:
                assert proc.stdin is not None
                try:
                    feed(proc.stdin)
                except BrokenPipeError as exc:  # the far side stopped reading: see its stderr
                    feed_error = exc
                finally:
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.close()
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RemoteError(f"{self.host.name}: no answer within {timeout} s") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        for reader in readers:
            reader.join(timeout=10)
        stderr = out.get("err", b"").decode(errors="replace").strip()
        if proc.returncode == SSH_FAILED:
            raise ConnectError(f"{self.host.name} ({self.host.address}): {stderr or 'ssh failed'}")
        if proc.returncode != 0 or feed_error is not None:
            raise RemoteError(
                f"{self.host.name}: exit {proc.returncode}: {stderr or feed_error or 'no message'}"
            )
        return out.get("out", b"").decode(errors="replace")
