"""Scale benchmark: one control node, 50 / 100 / 250 / 500 light hosts.

    python -m benchmarks.scale_bench                 (quick: 50 and 100 hosts, ~5 minutes)
    python -m benchmarks.scale_bench --sizes full    (50, 100, 250 and 500 hosts)
    python -m benchmarks.scale_bench --sizes 50,250
    python -m benchmarks scale_bench                 (through the runner of every benchmark)

Without --sizes, GPUPROV_BENCH_SIZES (`full` or a list, benchmarks/sizes.py) decides.

At each size, on fresh light hosts (gpuprov.testbed: sshd in network namespaces, all on this
machine), three runs of the real CLI, each a child process measured on its own:

    facts    `gpuprov facts INVENTORY -o json`: one fact round trip per host
    rollout  the first `gpuprov apply --yes`: every host has a change (preflight writes its
             identity file), so it is a staged rollout: a canary, waves of 10% / 50% / 100%
             bounded by failure domain (racks of 8 hosts, at most 4 of a rack per wave), a
             drain and an undrain hook per host (tiny local commands) and a command gate
             run on every host over SSH
    no-op    the second `gpuprov apply --yes`: converged, one `plan`, nothing written

Printed per size and run: wall time; the control node's own CPU seconds (the gpuprov
process and everything it waited for: hooks, from os.wait4's rusage) and peak RSS, total
and per host; failures (the JSON summary's `failed` plus a non-zero exit: must be 0). The
hosts' sshd CPU (every light host's sshd with its reaped sessions, from /proc/PID/stat) is
reported separately: on a real cluster each host spends it on its own CPU, here the hosts
share this machine's cores with the control node. Printed last: the ratios against the
targets (docs/scale.md): RSS <= 2 MB per host, wall(500)/wall(50)/10 <= 1 (linear).

A light-host lab holds at most 240 hosts (one /24), so a size above that is several labs,
one subnet each; the hosts of the later labs also trust the first lab's key, so one
inventory with one key reaches them all. Every lab is torn down at the end of its size.
Exits 1 when a run fails or has failures; timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from benchmarks.sizes import bench_sizes, parse_sizes

QUICK_SIZES = (50, 100)
FULL_SIZES = (50, 100, 250, 500)
LAB_MAX = 240  # LightHostLab's limit: one /24 per lab
RACK_SIZE = 8
RSS_TARGET_MB = 2.0
RUN_TIMEOUT_S = 1800
CLK_TCK = os.sysconf("SC_CLK_TCK")

POLICY: dict[str, Any] = {
    "canary": 1,
    "waves": ["10%", "50%", "100%"],
    "max_fail": 0,
    "failure_domain": "rack",
    "max_per_domain": 4,
    # A real gate runs on the host over SSH; this one checks what the work just wrote.
    "gates": [{"command": "test -s /etc/gpuprov/host.json", "timeout": 60}],
    # Hooks run on the control node, one process each: plain argvs, no shell.
    "drain": "true drain {host}",
    "undrain": "true undrain {host}",
}


@dataclass
class Run:
    wall_s: float
    cpu_s: float  # the gpuprov process tree on the control node
    rss_mb: float  # its peak RSS
    sshd_cpu_s: float  # every host's sshd, sessions included
    failures: int
    note: str = ""


def sshd_cpu(pids: Sequence[int]) -> float:
    """utime+stime+cutime+cstime of each host's sshd (PID 1 of its namespace reaps its
    sessions, so their CPU lands in its c-times), in seconds."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return total / CLK_TCK


def run_gpuprov(argv: list[str], pids: Sequence[int], env: dict[str, str]) -> tuple[Run, Any]:
    """One CLI run as a child: wall, its own CPU and peak RSS (wait4), failures."""
    before = sshd_cpu(pids)
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    run = Run(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        sshd_cpu_s=sshd_cpu(pids) - before,
        failures=0,
    )
    try:
        doc = json.loads(stdout)
    except ValueError:
        doc = None
    if proc.returncode != 0:
        run.failures = max(1, _failed(doc))
        run.note = f"exit {proc.returncode}: {stderr[-1500:]}"
    else:
        run.failures = _failed(doc)
    return run, doc


def _failed(doc: Any) -> int:
    if isinstance(doc, dict):
        summary = doc.get("summary")
        if isinstance(summary, dict):
            failed = summary.get("failed", 0)
            return len(failed) if isinstance(failed, list) else int(failed or 0)
        # facts: {host: {"ok": ...}}
        return sum(1 for v in doc.values() if not (isinstance(v, dict) and v.get("ok")))
    return 0


def lab_sizes(count: int) -> list[int]:
    labs = math.ceil(count / LAB_MAX)
    base, extra = divmod(count, labs)
    return [base + (1 if i < extra else 0) for i in range(labs)]


def write_inventory(path: Path, labs: Sequence[Any]) -> Path:
    from gpuprov.testbed.inventory import write_lab_inventory

    known = path.with_name("known_hosts")
    known.write_text("".join(lab.known_hosts_path.read_text() for lab in labs))
    hosts = [h for lab in labs for h in lab.inventory_hosts()]
    write_lab_inventory(
        path, hosts=hosts, key=labs[0].key_path, known_hosts=known, rack_size=RACK_SIZE
    )
    yaml = YAML()
    doc = yaml.load(path.read_text())
    doc["cluster"]["rollout"] = POLICY
    # 500 light hosts' sshd on this machine's cores, beside other work: at load average
    # 30 some did not accept a connection within the default 10 s (as the lab's VMs).
    doc["cluster"]["ssh"]["connect_timeout"] = 30
    doc["groups"]["gpu"]["vars"] = {
        "gpuprov_stack": False,  # preflight only: no systemd in a light host
        "gpuprov_preflight_ignore": ["gpus", "headers", "disk", "secure_boot"],
    }
    with path.open("w") as fh:
        yaml.dump(doc, fh)
    return path


def share_key(first: Any, lab: Any) -> None:
    """Let the first lab's key log in to `lab`'s hosts (root only: the inventory's user)."""
    for host in lab.hosts:
        auth = host.root_dir / "root/.ssh/authorized_keys"
        with auth.open("a") as fh:
            fh.write(first.public_key + "\n")


def one_size(count: int, env: dict[str, str]) -> dict[str, Run]:
    from gpuprov.testbed.lighthosts import LightHostLab

    gpuprov = [sys.executable, "-m", "gpuprov.cli"]
    results: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="gpuprov-scale-") as tmp, ExitStack() as stack:
        start = time.perf_counter()
        labs = []
        for i, size in enumerate(lab_sizes(count)):
            lab = LightHostLab(size, name_prefix=f"l{i + 1}n", start_timeout=max(30.0, size * 0.5))
            stack.enter_context(lab)
            labs.append(lab)
            if i:
                share_key(labs[0], lab)
        up = time.perf_counter() - start
        pids = [h.pid for lab in labs for h in lab.hosts if h.pid]
        inv = write_inventory(Path(tmp) / "scale.yaml", labs)
        print(f"  {count} hosts up in {up:.1f} s ({len(labs)} lab(s))", flush=True)
        steps = {
            "facts": [*gpuprov, "facts", str(inv), "-o", "json"],
            "rollout": [*gpuprov, "apply", str(inv), "--yes", "-o", "json"],
            "no-op": [*gpuprov, "apply", str(inv), "--yes", "-o", "json"],
        }
        for name, argv in steps.items():
            run, doc = run_gpuprov(argv, pids, env)
            if name == "facts" and run.failures == 0 and len(doc or {}) != count:
                run.failures = max(1, count - len(doc or {}))
            if name == "rollout" and run.failures == 0:
                rollout = (doc or {}).get("rollout") or {}
                waves = len((rollout.get("plan") or {}).get("waves") or [])
                changed = (doc or {}).get("summary", {}).get("changed")
                run.note = f"{waves} waves, changed {changed}"
                if changed != count:
                    run.failures = max(1, count - int(changed or 0))
            if name == "no-op" and run.failures == 0:
                status = (doc or {}).get("summary", {}).get("status")
                run.note = f"status {status}"
                if status != "up-to-date":
                    run.failures = 1
            results[name] = run
            print(f"  {name:8} {_line(run, count)}", flush=True)
    return results


def _line(run: Run, count: int) -> str:
    return (
        f"wall {run.wall_s:7.2f} s  cpu {run.cpu_s:7.2f} s  "
        f"rss {run.rss_mb:7.1f} MB ({run.rss_mb / count * 1024:6.0f} KB/host)  "
        f"sshd cpu {run.sshd_cpu_s:7.2f} s  failures {run.failures}"
        + (f"  [{run.note}]" if run.note else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_bench")
    parser.add_argument("--sizes", help="quick (50,100), full (50,100,250,500) or a list")
    args = parser.parse_args(list(argv) if argv is not None else [])
    if args.sizes:
        sizes = parse_sizes(args.sizes, QUICK_SIZES, FULL_SIZES, 4 * LAB_MAX, "--sizes")
    else:
        sizes = bench_sizes(QUICK_SIZES, FULL_SIZES, 4 * LAB_MAX)
    env = dict(os.environ)
    all_results: dict[int, dict[str, Run]] = {}
    for count in sizes:
        print(f"== {count} hosts", flush=True)
        all_results[count] = one_size(count, env)
    return report(all_results)


def report(results: dict[int, dict[str, Run]]) -> int:
    print()
    print("size  run       wall s   cpu s  peak RSS MB  KB/host  sshd cpu s  failures")
    failures = 0
    for count, runs in results.items():
        for name, run in runs.items():
            failures += run.failures
            print(
                f"{count:4}  {name:8} {run.wall_s:7.2f} {run.cpu_s:7.2f} {run.rss_mb:12.1f} "
                f"{run.rss_mb / count * 1024:8.0f} {run.sshd_cpu_s:11.2f} {run.failures:9}"
            )
    sizes = sorted(results)
    small, large = sizes[0], sizes[-1]
    print()
    for name in ("facts", "rollout", "no-op"):
        b = results[large][name]
        share = b.sshd_cpu_s / max(b.sshd_cpu_s + b.cpu_s, 1e-9)
        line = (
            f"{name:8} at {large} hosts: peak RSS {b.rss_mb / large * 1024:5.0f} KB/host "
            f"(target <= {RSS_TARGET_MB * 1024:.0f}); hosts' sshd {share:.0%} of the CPU"
        )
        if large > small:
            a = results[small][name]
            marginal = (b.rss_mb - a.rss_mb) / (large - small) * 1024
            wall = (b.wall_s / a.wall_s) / (large / small)
            cpu = (b.cpu_s / a.cpu_s) / (large / small)
            line += (
                f"; marginal RSS {marginal:4.0f} KB/host; "
                f"wall({large})/wall({small})/{large / small:g} = {wall:.2f} (target <= 1), "
                f"control-node cpu ratio {cpu:.2f}"
            )
        print(line)
    print(f"failures: {failures} (must be 0)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
