"""Drain/undrain hooks: an operator's command template run per host.

The template's {host} and {address} are validated by the loader (a host name or IP), must
be written bare (gpuprov.inventory.hook_template) and are shell-quoted before substitution,
so a host name can never inject shell syntax; a command without shell syntax runs as an
argv, without a shell at all. Hooks run locally (the default: the operator's machine has
`scontrol`/`kubectl`) or on `policy.hook_host` over the system `ssh` client with strict
host keys, the same known_hosts file the rest of gpuprov uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gpuprov.engine.ssh_config import cluster_ssh_config
from gpuprov.errors import InputError, Problem
from gpuprov.inventory.hook_template import argv_if_plain, render_with, template_problem
from gpuprov.inventory.model import Host, RolloutPolicy
from gpuprov.rollout.hook_process import run_in_own_group

OUTPUT_EXCERPT = 2000


@dataclass(frozen=True)
class HookResult:
    ok: bool
    command: str
    returncode: int | None
    output: str  # stdout+stderr tail, for the report

    @property
    def excerpt(self) -> str:
        return self.output[-OUTPUT_EXCERPT:]


class HookRunner(Protocol):
    def run(self, template: str, host: Host) -> HookResult: ...


def render(template: str, host: Host) -> str:
    """The command for `host`; refuses a template the loader would refuse (a policy built
    in code skips the loader) rather than run a value inside quotes."""
    problem = template_problem(template)
    if problem:
        raise InputError(f"hook command {template!r}: {problem}")
    return render_with(template, host.name, host.address)


class LocalHookRunner:
    """Runs the rendered command with /bin/sh on this machine."""

    def __init__(self, timeout: float = 600.0):
        self.timeout = timeout

    def argv(self, command: str) -> list[str]:
        # A plain command (`scontrol update nodename=... state=drain`) runs as an argv:
        # no shell ever parses the host's name. Pipes, $(...) and the like need /bin/sh.
        return argv_if_plain(command) or ["/bin/sh", "-c", command]

    def run(self, template: str, host: Host) -> HookResult:
        command = render(template, host)
        try:
            returncode, output = run_in_own_group(self.argv(command), self.timeout)
        except OSError as exc:
            return HookResult(False, command, None, str(exc))
        if returncode is None:
            return HookResult(
                False, command, None, f"{output}\ntimed out after {self.timeout:.0f}s"
            )
        return HookResult(returncode == 0, command, returncode, output.strip())


class SSHHookRunner(LocalHookRunner):
    """Runs the rendered command on `hook_host` (e.g. the Slurm controller) via `ssh`."""

    def __init__(self, hook_host: Host, known_hosts: Path, timeout: float = 600.0):
        super().__init__(timeout)
        self.hook_host = hook_host
        self.known_hosts = known_hosts

    def argv(self, command: str) -> list[str]:
        ssh = self.hook_host.ssh
        argv = [
            # -F: ProxyJump hops get only the config file, not -o options.
            "ssh", "-F", str(cluster_ssh_config(self.known_hosts)),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", f"ConnectTimeout={ssh.connect_timeout}", "-p", str(ssh.port),
        ]  # fmt: skip
        if ssh.key:
            argv += ["-i", str(Path(ssh.key).expanduser()), "-o", "IdentitiesOnly=yes"]
        # `--`: nothing after it is an ssh option, whatever the inventory says.
        return [*argv, "--", f"{ssh.user}@{self.hook_host.address}", command]


def make_hook_runner(
    policy: RolloutPolicy, hosts: Mapping[str, Host], known_hosts: Path, timeout: float = 600.0
) -> HookRunner:
    """Local runner, or an SSH runner to `policy.hook_host` (which must be an inventory host)."""
    if policy.hook_host is None:
        return LocalHookRunner(timeout)
    target = hosts.get(policy.hook_host)
    if target is None:
        raise InputError(
            [
                Problem(
                    policy.location,
                    f"rollout.hook_host {policy.hook_host!r} is not a host of this inventory",
                )
            ]
        )
    return SSHHookRunner(target, known_hosts, timeout)
