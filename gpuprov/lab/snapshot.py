"""LAB: what a host looks like, to prove a dry run changed nothing.

One SSH call per host (strict host keys, the inventory's own settings) returns the
installed packages with versions and states, a sha256 of every file under /etc, and the
state of every service, socket, timer, mount and target. Units that exist only because
someone logged in (sessions, user managers) are left out: our own SSH login makes them.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import subprocess
from dataclasses import dataclass

from gpuprov.inventory.model import Host

_SCRIPT = r"""
set -u
echo '== packages'
dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' | sort
echo '== etc'
find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum
echo '== units'
systemctl list-units --all --no-legend --plain --no-pager \
    --type=service,socket,timer,mount,target,path \
  | awk '{print $1, $2, $3, $4}' \
  | grep -Ev '^(user@|user-runtime-dir@|session-)' | sort
echo '== end'
"""


@dataclass(frozen=True)
class Snapshot:
    host: str
    sections: dict[str, tuple[str, ...]]  # packages / etc / units -> sorted lines

    def diff(self, other: Snapshot) -> list[str]:
        """Unified diff lines per section (empty when identical)."""
        out: list[str] = []
        for name in sorted(set(self.sections) | set(other.sections)):
            a, b = self.sections.get(name, ()), other.sections.get(name, ())
            if a != b:
                out += list(difflib.unified_diff(a, b, f"{self.host}:{name} before",
                                                 f"{self.host}:{name} after", lineterm=""))  # fmt: skip
        return out


def ssh_command(host: Host) -> list[str]:
    ssh = host.ssh
    cmd = [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={ssh.connect_timeout}", "-o", "LogLevel=ERROR",
        "-p", str(ssh.port),
    ]  # fmt: skip
    if ssh.known_hosts:
        cmd += ["-o", f"UserKnownHostsFile={ssh.known_hosts}"]
    if ssh.key:
        cmd += ["-o", "IdentitiesOnly=yes", "-i", str(ssh.key)]
    return [*cmd, f"{ssh.user}@{host.address}"]


def take(host: Host, timeout: float = 300) -> Snapshot:
    remote = "sudo -n sh -s" if host.ssh.sudo and host.ssh.user != "root" else "sh -s"
    proc = subprocess.run(
        [*ssh_command(host), remote], input=_SCRIPT, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    if proc.returncode != 0 or "== end" not in proc.stdout:
        raise RuntimeError(f"{host.name}: snapshot failed: {proc.stderr.strip()[-500:]}")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in proc.stdout.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:], [])
        elif current is not None:
            current.append(line)
    sections.pop("end", None)
    for name in ("packages", "etc", "units"):
        if not sections.get(name):
            raise RuntimeError(f"{host.name}: snapshot section {name!r} is empty")
    return Snapshot(host.name, {k: tuple(v) for k, v in sections.items()})


def take_all(hosts: list[Host]) -> dict[str, Snapshot]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip([h.name for h in hosts], pool.map(take, hosts), strict=True))
