"""Rollouts against real sshd hosts (light hosts in network namespaces): the work is an
SSH command per host, a host killed mid-wave counts as failed, hooks run over SSH."""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpuprov.errors import ExitCode
from gpuprov.inventory.model import Host, RolloutPolicy, SSHSettings
from gpuprov.rollout.hooks import make_hook_runner
from gpuprov.rollout.planner import plan_rollout
from gpuprov.rollout.runner import HostResult, run_rollout
from gpuprov.rollout.state import StateStore
from gpuprov.testbed import lighthosts

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def lab():
    names = [f"gpu{i:02d}" for i in range(6)] + ["ctl"]
    with lighthosts.LightHostLab(len(names), names=names, prefix="rollt") as lab:
        yield lab


def ssh(lab, host: Host, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", *lab.ssh_options(), f"root@{host.address}", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


class SSHWork:
    """Each host's work: an SSH command that sleeps, then leaves a marker file."""

    def __init__(self, lab, sleep: float):
        self.lab, self.sleep = lab, sleep

    def one(self, host: Host, report) -> HostResult:
        report(host.name, "install")
        proc = ssh(self.lab, host, f"sleep {self.sleep} && echo ok > /var/tmp/gpuprov-work")
        if proc.returncode == 255:
            return HostResult(False, "install", proc.stderr, unreachable=True)
        return HostResult(proc.returncode == 0, "install", proc.stderr)

    def __call__(self, hosts, report):
        with ThreadPoolExecutor(len(hosts)) as pool:
            return dict(
                zip(
                    [h.name for h in hosts],
                    pool.map(lambda h: self.one(h, report), hosts),
                    strict=True,
                )
            )


def test_work_over_ssh_host_killed_mid_wave_fails_and_stays_drained(lab, tmp_path: Path):
    hosts = [
        Host(h.name, h.address, "gpu", "hgx", SSHSettings(user="root", key=lab.key_path), None, None,
             {"rack": f"r{i % 2}"})
        for i, h in enumerate(lab.hosts) if h.name != "ctl"
    ]  # fmt: skip
    ctl = lab.host("ctl")
    ctl_host = Host(
        "ctl",
        ctl.address,
        "controller",
        "ctl",
        SSHSettings(user="root", key=lab.key_path),
        None,
        None,
    )
    log = "/var/tmp/hooks.log"
    policy = RolloutPolicy(
        canary=1, waves=("100%",), max_fail="1",
        drain=f"echo drain {{host}} >> {log}", undrain=f"echo undrain {{host}} >> {log}", hook_host="ctl",
    )  # fmt: skip
    plan = plan_rollout(hosts, policy, seed="lab")
    victim = plan.waves[1].hosts[0]
    by_name = {h.name: h for h in hosts} | {"ctl": ctl_host}
    hooks = make_hook_runner(policy, by_name, lab.known_hosts_path)

    def work(wave_hosts, report):
        killer = None
        if any(h.name == victim for h in wave_hosts):  # power cut while the wave runs
            killer = threading.Timer(1.5, lab.kill, args=(victim,))
            killer.start()
        try:
            return SSHWork(lab, sleep=4)(wave_hosts, report)
        finally:
            if killer:
                killer.join()

    def gate(gate_hosts):
        out = {}
        for h in gate_hosts:
            proc = ssh(lab, h, "test -s /var/tmp/gpuprov-work")
            out[h.name] = HostResult(proc.returncode == 0, "gate", proc.stderr)
        return out

    inventory = tmp_path / "lab.yaml"
    inventory.write_text("cluster: {name: lab}\n")
    report = run_rollout(
        plan,
        policy,
        StateStore.for_inventory(inventory),
        work=work,
        gate=gate,
        hooks=hooks,
        hosts=by_name,
    )
    try:
        assert report.status == "completed" and report.exit_code == ExitCode.HOSTS_FAILED
        assert [(f.host, f.step) for f in report.failed] == [(victim, "install")]
        assert sorted(report.done) == sorted(h.name for h in hosts if h.name != victim)
        events = [tuple(line.split()) for line in lab.exec("ctl", f"cat {log}").stdout.splitlines()]
        assert ("drain", victim) in events and ("undrain", victim) not in events
        for h in hosts:
            if h.name != victim:
                assert events.index(("drain", h.name)) < events.index(("undrain", h.name))
                assert lab.exec(h.name, "cat /var/tmp/gpuprov-work").stdout.strip() == "ok"
    finally:
        lab.start_host(victim)
