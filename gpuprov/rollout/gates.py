"""Health gates between a wave's deploys and its undrain: the runner's `gate` callable.

One fresh pyinfra State per gate run (the wave's hosts), one greenlet per host, and per
host one round trip per fact: HostState for the built-in gates (plus `gpuprov verify`'s
VerifyProbe when `dcgm-diag` or `container` is asked for), one per command gate. The
built-in gates are `gpuprov verify`'s checks (gpuprov.verify.node.node_verdict), grouped:

- `nvidia-smi`: GPUs on the PCI bus, nvidia-smi runs, GPU count and model, pinned driver
  loaded, no uncorrectable ECC, no pending remaps, NVLink fabric up, fabric manager ==
  driver (NVSwitch systems).
- `dcgm-diag`: `dcgmi diag -r 1` passes (hosts with `dcgm: true`).
- `container`: the CDI spec is current and a GPU container starts (host var
  `gpuprov_verify_image`); without a test image it is *not checked*, which fails the gate:
  a gate the inventory asks for must really be checked.

They apply to hosts whose NVIDIA stack is installed (nvidia-smi, a loaded nvidia module
or a driver package); on a host with none (`gpuprov_stack: false`, a scratch
`gpuprov_root`) there is nothing to judge yet and the built-in gates pass.

A command gate (`{command: "..."}`) runs on the host as the deploy user (with sudo when
`ssh.sudo`); exit 0 passes, anything else fails the host with the command's output tail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gpuprov.facts.gate import GateCommand
from gpuprov.inventory.model import Cluster, CommandGate, Host, RolloutPolicy
from gpuprov.rollout.hooks import render
from gpuprov.rollout.runner import HostResult

if TYPE_CHECKING:
    from gpuprov.engine.connect import SudoPasswords

OUTPUT_TAIL = 2000


def stack_installed(state) -> bool:
    """Is there an NVIDIA driver on the host for the nvidia-smi gate to judge?"""
    if state.nvidia_smi.present or state.nvidia_module_version:
        return True
    prefixes = ("nvidia-driver", "nvidia-open", "cuda-drivers", "libnvidia-compute")
    return any(name.startswith(prefixes) for name in state.packages)


# Checks of node_verdict owned by a gate; `nvidia-smi` owns every other check (PCI bus,
# nvidia-smi, GPU count and model, driver, ECC, remaps, fabric, fabric manager...), so a
# check `gpuprov verify` gains later is gated too, never silently ignored.
GATE_CHECKS = {"dcgm-diag": frozenset({"dcgm-diag"}), "container": frozenset({"cdi-spec", "container"})}  # fmt: skip


def _gate_of(check: str) -> str:
    return next((g for g, names in GATE_CHECKS.items() if check in names), "nvidia-smi")


def builtin_failures(host: Host, gates: Sequence[str], state, probe) -> list[str]:
    """The failed checks of the built-in gates for one host, as "gate: check: detail"."""
    from gpuprov.facts.verify_probe import ProbeData
    from gpuprov.verify.node import node_verdict

    if not gates or not stack_installed(state):
        return []
    report = node_verdict(host, state, probe if probe is not None else ProbeData())
    failures = [f"{_gate_of(c.name)}: {c.name}: {c.detail}" for c in report.verdict.failed]
    failures += [f"{_gate_of(n)}: {n}: not checked: {why}" for n, why in report.not_checked]
    return [f for f in failures if f.split(":", 1)[0] in gates]


class HealthGates:
    """The runner's gate callable: `gates(hosts) -> {host: HostResult}`."""

    def __init__(
        self, cluster: Cluster, policy: RolloutPolicy, *, password: SudoPasswords | None = None
    ):
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
                probe = None
                if stack_installed(state) and {"dcgm-diag", "container"} & set(self.builtin):
                    probe = self._probe(pyhost, host)
                failures += builtin_failures(host, self.builtin, state, probe)
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

    @staticmethod
    def _probe(pyhost, host: Host):
        from gpuprov.facts.verify_probe import VerifyProbe
        from gpuprov.inventory.mirrors import MIRROR_CHOICE_KEY
        from gpuprov.verify.node import container_gate_args

        choice = pyhost.data.get(MIRROR_CHOICE_KEY)
        probe = pyhost.get_fact(VerifyProbe, **container_gate_args(host, choice))
        if probe is None:
            raise RuntimeError("no answer to the verify probe (host gone?)")
        return probe
