"""Real local work for rollout tests: each host's "work" and "gate" is a shell subprocess
that appends to a log, so tests check what actually ran, in what order, and how often.

Also runnable as a script (`python support.py ...`) so tests can run a rollout in another
process and `kill -9` it mid-wave.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpuprov.inventory.model import Host, RolloutPolicy, SSHSettings
from gpuprov.rollout.hooks import LocalHookRunner
from gpuprov.rollout.planner import plan_rollout
from gpuprov.rollout.runner import HostResult, run_rollout
from gpuprov.rollout.state import StateStore


def make_hosts(n: int, racks: int = 3, prefix: str = "gpu") -> list[Host]:
    return [
        Host(
            name=f"{prefix}{i:03d}",
            address=f"10.0.{i // 250}.{i % 250 + 1}",
            role="gpu",
            group="hgx",
            ssh=SSHSettings(),
            stack=None,
            profile=None,
            domains={"rack": f"r{i % racks:02d}"} if racks else {},
        )
        for i in range(n)
    ]


def log_lines(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines() if " " in line]


class ShellWork:
    """The work callable: one `sh` per host, in parallel; a host in `fail` exits 1 with a
    message on stderr; reports a step per host through the runner's callback."""

    def __init__(
        self,
        log: Path,
        fail: set[str] = frozenset(),
        sleep: float = 0.0,
        silent: set[str] = frozenset(),
        stagger: float = 0.0,
    ):
        self.log, self.fail, self.sleep, self.silent = log, set(fail), sleep, set(silent)
        # the n-th host of a wave sleeps n * stagger longer: its hosts finish one by one,
        # leaving a wide "some done, some still running" moment for the crash tests
        self.stagger = stagger

    def one(self, host: Host, report, extra: float = 0.0) -> HostResult:
        report(host.name, "install driver")
        q = shlex.quote
        seconds = self.sleep + extra
        script = f"echo work-start {q(host.name)} >> {q(str(self.log))}; sleep {seconds}; "
        if host.name in self.fail:
            script += "echo 'E: Unable to locate package nvidia-driver-580' >&2; exit 100"
        else:
            script += f"echo work-done {q(host.name)} >> {q(str(self.log))}"
        proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
        if proc.returncode:
            return HostResult(False, "install driver", proc.stderr)
        report(host.name, "configure")
        return HostResult(True, "configure")

    def __call__(self, hosts: list[Host], report) -> dict[str, HostResult]:
        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            results = dict(
                zip(
                    [h.name for h in hosts],
                    pool.map(
                        lambda ih: self.one(ih[1], report, ih[0] * self.stagger), enumerate(hosts)
                    ),  # fmt: skip
                    strict=True,
                )
            )
        # A host that "vanished" gives no result at all.
        return {k: v for k, v in results.items() if k not in self.silent}


class ShellGate:
    """The health gate: `sh` per host; hosts in `fail` fail it."""

    def __init__(self, log: Path, fail: set[str] = frozenset()):
        self.log, self.fail = log, set(fail)

    def __call__(self, hosts: list[Host]) -> dict[str, HostResult]:
        out = {}
        for host in hosts:
            rc = 1 if host.name in self.fail else 0
            script = f"echo gate {shlex.quote(host.name)} >> {shlex.quote(str(self.log))}; "
            script += "echo 'nvidia-smi: No devices were found' >&2; " if rc else ""
            proc = subprocess.run(
                ["sh", "-c", script + f"exit {rc}"], capture_output=True, text=True
            )
            out[host.name] = HostResult(proc.returncode == 0, "gate nvidia-smi", proc.stderr)
        return out


def hook_policy(log: Path, **kw) -> RolloutPolicy:
    q = shlex.quote(str(log))
    return RolloutPolicy(
        drain=f"echo drain {{host}} >> {q}", undrain=f"echo undrain {{host}} >> {q}", **kw
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("inventory", type=Path)
    ap.add_argument("log", type=Path)
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=0.3)
    ap.add_argument("--stagger", type=float, default=0.0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    hosts = make_hosts(args.hosts)
    policy = hook_policy(args.log, canary=1, waves=("50%", "100%"), max_fail="0")
    plan = plan_rollout(hosts, policy, seed="proc")
    store = StateStore.for_inventory(args.inventory)
    resume = None
    if args.resume:
        record = store.latest_resumable()
        resume = record.id if record else None
    report = run_rollout(
        plan,
        policy,
        store,
        work=ShellWork(args.log, sleep=args.sleep, stagger=args.stagger),
        gate=ShellGate(args.log),
        hooks=LocalHookRunner(),
        resume=resume,
    )
    print(json.dumps(report.to_dict()))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
