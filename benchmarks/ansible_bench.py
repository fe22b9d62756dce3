"""gpuprov vs Ansible, same light hosts, same run: a no-op of a converged GPU node.

    python -m benchmarks ansible_bench         (or `make bench`, which runs every benchmark)

Both sides check the same state on the same hosts (sshd in network namespaces,
gpuprov.testbed), in interleaved runs so the load on this shared machine hits both alike:

    gpuprov  `gpuprov apply INVENTORY --yes` on converged hosts: its one NodeFacts round
             trip per host, then the deploys evaluated (preflight only: light hosts have
             no systemd, GPUs or NVIDIA packages for the GPU stack's operations)
    ansible  `ansible-playbook benchmarks/ansible/playbook.yml`: the same checks, task for
             task (docs/performance.md), with pipelining, forks = hosts, fact gathering
             off, ControlPersist (connections reused across tasks and runs), the
             interpreter named; every task "ok", changed=0

The first run of each converges (gpuprov writes its identity file, the play its managed
files and opens its SSH control masters); then ROUNDS rounds, each timing every size on
both sides. Settings (environment): GPUPROV_BENCH_SIZES (default: the quick set 1,5;
`full`: 1,5,20,100; or a list, benchmarks/sizes.py), GPUPROV_BENCH_ROUNDS (default 3). Needs root (light hosts) and ansible-core (the `bench`
extra). Prints the medians per size, then the ratios last; exits 1 when a run fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

from benchmarks.ansible.setup import PLAYBOOK, write_config
from benchmarks.sizes import bench_sizes

_RECAP = re.compile(r"^\S+\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run(
    cmd: list[str], env: dict[str, str] | None = None, timeout: int = 3600
) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return elapsed, proc.stdout


def gpuprov_inventory(lab, hosts: list[tuple[str, str]], path: Path) -> Path:
    from gpuprov.testbed.inventory import write_lab_inventory

    write_lab_inventory(path, hosts=hosts, key=lab.key_path, known_hosts=lab.known_hosts_path)
    yaml = YAML()
    doc = yaml.load(path.read_text())
    # A loaded control node (one core per ten runnable processes here) can take more than
    # the default 10 s to finish a TCP connect; the lab inventories give VMs 30 s too.
    doc["cluster"]["ssh"]["connect_timeout"] = 30
    doc["groups"]["gpu"]["vars"] = {
        "gpuprov_stack": False,  # preflight only: no systemd in a light host
        "gpuprov_preflight_ignore": ["gpus", "headers", "disk", "secure_boot"],
    }
    with path.open("w") as fh:
        yaml.dump(doc, fh)
    return path


def check_gpuprov(out: str) -> None:
    summary = json.loads(out)["summary"]
    if summary.get("status") != "up-to-date":
        raise RuntimeError(f"gpuprov apply was not a no-op: {summary}")


def check_ansible(out: str, hosts: int) -> None:
    recaps = _RECAP.findall(out)
    if len(recaps) != hosts or any(r[1:] != ("0", "0", "0") for r in recaps):
        raise RuntimeError(f"ansible-playbook was not a no-op on {hosts} hosts:\n{out[-2000:]}")


QUICK_SIZES = (1, 5)
FULL_SIZES = (1, 5, 20, 100)
LAB_MAX = 240  # one light-host lab


def main() -> int:
    from gpuprov.testbed.lighthosts import LightHostLab

    playbook_bin = Path(sys.executable).with_name("ansible-playbook")
    if not playbook_bin.exists() and shutil.which("ansible-playbook") is None:
        print("ansible-playbook not found: pip install -e '.[bench]'")
        return 1
    ansible = str(playbook_bin if playbook_bin.exists() else shutil.which("ansible-playbook"))
    sizes = bench_sizes(QUICK_SIZES, FULL_SIZES, LAB_MAX)
    rounds = int(os.environ.get("GPUPROV_BENCH_ROUNDS", "3"))
    gpuprov = [sys.executable, "-m", "gpuprov.cli"]
    times: dict[tuple[str, int], list[float]] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpa-") as tmp, LightHostLab(max(sizes)) as lab:
        keyring = Path(tmp) / "mirror.gpg"
        keyring.write_bytes(os.urandom(2048))  # a keyring's size; apt never reads it here
        commands: dict[int, tuple[list[str], list[str], dict[str, str]]] = {}
        for n in sizes:
            hosts = lab.inventory_hosts()[:n]
            work = Path(tmp) / f"n{n}"
            work.mkdir()
            inv = gpuprov_inventory(lab, hosts, work / "lab.yaml")
            env = write_config(work, hosts, lab.key_path, lab.known_hosts_path)
            ours = [*gpuprov, "apply", str(inv), "--yes", "-o", "json"]
            theirs = [ansible, str(PLAYBOOK), "-e", f"mirror_keyring={keyring}"]
            commands[n] = (ours, theirs, env)
            run(ours)  # converge: gpuprov's identity file
            run(theirs, env)  # converge: the play's files; opens the control masters
        for r in range(rounds):  # interleaved: every size, both sides, each round
            for n in sizes:
                ours, theirs, env = commands[n]
                said = [f"round {r + 1}/{rounds}, {n} hosts:"]
                for side, cmd, check in (
                    ("gpuprov", ours, check_gpuprov),
                    ("ansible", theirs, lambda out, n=n: check_ansible(out, n)),
                ):
                    try:  # a failed run is reported and left out; the others go on
                        t, out = run(cmd, None if side == "gpuprov" else env)
                        check(out)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        failures.append(f"{side}, {n} hosts, round {r + 1}: {exc}"[:1500])
                        said.append(f"{side} FAILED,")
                        continue
                    times.setdefault((side, n), []).append(t)
                    said.append(f"{side} {t:.2f} s,")
                load = " ".join(f"{x:.1f}" for x in os.getloadavg())
                print(" ".join(said), f"load average {load}", flush=True)
    for failure in failures:
        print(f"FAILED: {failure}")
    load = os.getloadavg()
    print(f"rounds {rounds}; load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{'hosts':>6} {'gpuprov s':>10} {'ansible s':>10}  (medians; runs)")
    medians = {}
    for n in sizes:
        got = [times.get((side, n), []) for side in ("gpuprov", "ansible")]
        if all(got):
            medians[n] = [statistics.median(x) for x in got]
            g, a = medians[n]
            print(f"{n:>6} {g:>10.2f} {a:>10.2f}  ({len(got[0])}; {len(got[1])})")
    for n, (g, a) in medians.items():
        print(f"ratio ansible/gpuprov at {n} hosts: {a / g:.1f}x")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
