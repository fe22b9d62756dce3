"""Health gates between a wave's deploys and its undrain: the runner's `gate` callable.

One fresh pyinfra State per gate run (the wave's hosts), one greenlet per host, and per
host one round trip per fact: the HostState fact for the built-in gates, plus one per
command gate. Built-in gates judge with gpuprov.verify.verdict:

- `nvidia-smi`: nvidia-smi runs and agrees with the profile and the pinned driver (GPU
  count and model, driver loaded, no uncorrectable ECC, no pending remaps, NVLink fabric).
  It applies to hosts whose NVIDIA stack is installed (nvidia-smi, a loaded nvidia module
  or a driver package); on a host without one there is nothing to check yet, and the gate
  says so in its detail instead of failing a host that no deploy has given a driver.
- `dcgm-diag`: `dcgmi diag -r 1` passes (hosts whose stack has `dcgm: true`).
- `container`: needs `gpuprov verify`'s container probe, not in this build: fails closed.

A command gate (`{command: "..."}`) runs on the host as the deploy user (with sudo when
`ssh.sudo`); exit 0 passes, anything else fails the host with the command's output tail.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from pyinfra.api import FactBase

from gpuprov.inventory.model import Cluster, CommandGate, Host, RolloutPolicy
from gpuprov.rollout.hooks import render
from gpuprov.rollout.runner import HostResult

OUTPUT_TAIL = 2000
_RC = "@@gpuprov:rc "


@dataclass(frozen=True)
class CommandOutcome:
    rc: int
    output: str


class GateCommand(FactBase[CommandOutcome]):
    """Run a gate command; never fails as a fact (the exit status is the data)."""

    def command(self, script: str, timeout: int) -> str:
        run = f"timeout {int(timeout)} sh -c {shlex.quote(script)}"
        return f'out=$({run} 2>&1 </dev/null); rc=$?; printf \'%s\\n{_RC}%s\\n\' "$out" "$rc"'

    def process(self, output: list[str]) -> CommandOutcome:
        rc = 255
        body = []
        for line in output:
            if line.startswith(_RC):
                rc = int(line[len(_RC) :].strip() or 255)
            else:
                body.append(line)
        return CommandOutcome(rc, "\n".join(body).strip())


class DcgmDiagText(FactBase[CommandOutcome]):
    """`dcgmi diag -r 1` (rc 127 when dcgmi is missing)."""

    def command(self) -> str:
        return GateCommand().command(
            "command -v dcgmi >/dev/null 2>&1 || exit 127; dcgmi diag -r 1", 600
        )

    def process(self, output: list[str]) -> CommandOutcome:
        return GateCommand().process(output)


def stack_installed(state) -> bool:
    """Is there an NVIDIA driver on the host for the nvidia-smi gate to judge?"""
    if state.nvidia_smi.present or state.nvidia_module_version:
        return True
    prefixes = ("nvidia-driver", "nvidia-open", "cuda-drivers", "libnvidia-compute")
    return any(name.startswith(prefixes) for name in state.packages)


def builtin_failures(
    host: Host, gates: Sequence[str], state, dcgm: CommandOutcome | None
) -> list[str]:
    """The failed checks of the built-in gates for one host, as "gate: detail" lines."""
    from gpuprov.parsers import ParseError
    from gpuprov.parsers.dcgmi_diag import parse_dcgmi_diag
    from gpuprov.tables import get_profile
    from gpuprov.verify import verdict

    failures: list[str] = []
    if "nvidia-smi" in gates and stack_installed(state):
        if host.profile is None or host.stack is None:
            failures.append("nvidia-smi: the host has no profile and stack to check against")
        else:
            v = verdict(state, get_profile(host.profile), host.stack.driver.version)
            failures += [f"nvidia-smi: {c.name}: {c.detail}" for c in v.failed]
    if "dcgm-diag" in gates and host.stack is not None and host.stack.dcgm:
        if dcgm is None or dcgm.rc == 127:
            failures.append("dcgm-diag: dcgmi is not installed")
        else:
            try:
                diag = parse_dcgmi_diag(dcgm.output)
            except ParseError:
                first = (dcgm.output.splitlines() or ["no output"])[0]
                failures.append(f"dcgm-diag: dcgmi diag -r 1 failed (exit {dcgm.rc}): {first}")
            else:
                if not diag.passed:
                    names = ", ".join(t.name for t in diag.failed)
                    failures.append(f"dcgm-diag: failed: {names}")
    if "container" in gates:
        failures.append(
            "container: this build has no container probe (gpuprov verify); "
            "remove the gate or upgrade gpuprov"
        )
    return failures


class HealthGates:
    """The runner's gate callable: `gates(hosts) -> {host: HostResult}`."""

    def __init__(self, cluster: Cluster, policy: RolloutPolicy, *, password: str | None = None):
        self.cluster = cluster
        self.builtin = [g for g in policy.gates if isinstance(g, str)]
        self.commands = [g for g in policy.gates if isinstance(g, CommandGate)]
        self.password = password

    def __call__(self, hosts: list[Host]) -> dict[str, HostResult]:
        if not self.builtin and not self.commands:
            return {h.name: HostResult(True, "gate") for h in hosts}
        import gevent
        from pyinfra.context import ctx_state

        from gpuprov.engine.connect import Session, build_state, connect_hosts, quiet_pyinfra

        state = build_state(self.cluster, hosts, password=self.password)
        session = Session(self.cluster, state, {h.name: h for h in hosts})
        try:
            connect_hosts(session)
            with quiet_pyinfra(), ctx_state.use(state):
                greenlets = {
                    n: state.pool.spawn(self._one, session, session.hosts[n])
                    for n in session.connected
                }
                gevent.joinall(list(greenlets.values()))
        finally:
            session.close()
        results: dict[str, HostResult] = {}
        for name in session.hosts:
            if name in greenlets:
                results[name] = greenlets[name].get()
            else:
                conn = session.results.get(name)
                message = conn.message if conn else "not connected"
                results[name] = HostResult(False, "gate", message, unreachable=True)
        return results

    def _one(self, session, host: Host) -> HostResult:
        from gpuprov.facts.host_state import HostState

        pyhost = session.pyinfra_host(host.name)
        try:
            failures: list[str] = []
            if self.builtin:
                state = pyhost.get_fact(HostState)
                if state is None:
                    raise RuntimeError("no answer to the HostState fact (host gone?)")
                dcgm = None
                if "dcgm-diag" in self.builtin and host.stack is not None and host.stack.dcgm:
                    dcgm = pyhost.get_fact(DcgmDiagText)
                failures += builtin_failures(host, self.builtin, state, dcgm)
            for gate in self.commands:
                script = render(gate.command, host)
                out = pyhost.get_fact(GateCommand, script=script, timeout=gate.timeout)
                if out is None:
                    raise RuntimeError(f"{gate.name}: no answer (host gone?)")
                if out.rc != 0:
                    why = "timed out" if out.rc == 124 else f"exit {out.rc}"
                    failures.append(f"{gate.name} ({why})\n{out.output[-OUTPUT_TAIL:]}".rstrip())
        except Exception as exc:  # the host went away, a fact failed: this host fails
            text = str(exc).strip().splitlines()
            return HostResult(False, "gate", text[0] if text else type(exc).__name__)
        if failures:
            return HostResult(False, "gate", "\n".join(failures))
        return HostResult(True, "gate")
