"""Where a converged no-op `gpuprov apply` / `gpuprov plan` spends its time (`--timings`).

    python -m benchmarks.noop_breakdown              (light hosts: 3, 5 rounds)
    python -m benchmarks.noop_breakdown --vm         (one test-bed VM: systemd, ~5 min boot)
    python -m benchmarks.noop_breakdown --lab        (the running, converged `make demo` lab)

Not part of `python -m benchmarks` (it may boot a VM, or needs a running lab). Converges
the hosts, then runs `apply --yes -o json --timings` and `plan -o json --timings` ROUNDS
times, interleaved, and prints each phase's median (docs/performance.md). Then `plan` from
outside, wall and CPU, interleaved: as it runs now, with the modules the startup cuts left
out imported again (EAGER_BEFORE), and with the interpreter's full teardown at exit. Then,
on the first host, the HostState "services" section both ways, interleaved: ten
`systemctl is-active|is-enabled` runs against one `systemctl show` (the cut; only a host
running systemd can answer the latter). --capture DIR keeps that host's raw `systemctl
show` output (a test fixture).

--lab (benchmarks/noop_lab.py) takes the full GPU stack where it runs: the Vagrant lab's
mirror01 and GPU hosts, systemd, every role converged by `make demo`. It converges
nothing: it refuses, saying why, when the lab is not running or not converged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

UNITS = "nvidia-persistenced nvidia-fabricmanager nvidia-dcgm containerd docker"
LOOP = (
    f"for u in {UNITS}; do systemctl is-active $u.service; systemctl is-enabled $u.service;"
    " done >/dev/null 2>&1; true"
)
SHOW = f"systemctl show -p ActiveState -p UnitFileState $(printf '%s.service ' {UNITS})"
# `gpuprov` as main() ran it before the exit cut: the interpreter's full teardown at exit.
FULL_EXIT = (
    "import sys; from gpuprov.cli import _patch_gevent, gpuprov; "
    "from gpuprov.cli.app import run; _patch_gevent(); sys.argv[0] = 'gpuprov'; "
    "sys.exit(run(gpuprov))"
)


# What a no-op plan/apply imported before the startup cuts and no longer does (the
# reboot's pyinfra server operations, gpuprov.aptrepo's publishing side, the readers of
# INI / Ansible inventories and of a bundle: section): imported again, after the gevent
# patch as before, they give "before" in the same run as "after".
EAGER_BEFORE = (
    "pyinfra.operations.server",
    "pyinfra.facts.server",
    "gpuprov.aptrepo.keys",
    "gpuprov.aptrepo.publish",
    "gpuprov.aptrepo.verify",
    "gpuprov.inventory.ini",
    "gpuprov.inventory.ansible",
    "gpuprov.inventory.deepops",
    "gpuprov.inventory.bundle",
)
BEFORE_CUTS = (
    "import sys; from gpuprov.cli import _exit_now, _patch_gevent, gpuprov; "
    "from gpuprov.engine import timings; timings.restart(); _patch_gevent(); "
    f"import importlib; [importlib.import_module(m) for m in {EAGER_BEFORE!r}]; "
    "from gpuprov.cli.app import run; sys.argv[0] = 'gpuprov'; _exit_now(run(gpuprov))"
)


def outside(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of the command, measured by this process: the CPU is the
    child's user + system time, which the machine's load does not inflate."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, timeout=900, stdin=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def gpuprov(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gpuprov {args[0]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def on_host(ssh: list[str], script: str) -> tuple[float, str]:
    """`script` on the host, timed there (the SSH connection is not the question)."""
    wrapped = f't0=$(date +%s%N); {script} > /tmp/.gp-out 2>&1; t1=$(date +%s%N); echo "$t0 $t1"'
    out = subprocess.run([*ssh, wrapped], capture_output=True, text=True, timeout=120, check=True)
    t0, t1 = out.stdout.split()
    raw = subprocess.run([*ssh, "cat /tmp/.gp-out"], capture_output=True, text=True, timeout=60)
    return (int(t1) - int(t0)) / 1e9, raw.stdout


def median_phases(docs: list[dict]) -> dict[str, float]:
    names: list[str] = []
    for d in docs:
        names += [n for n in d["phases"] if n not in names]
    return {n: statistics.median(d["phases"].get(n, 0.0) for d in docs) for n in names}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vm", action="store_true", help="one test-bed VM instead of light hosts")
    ap.add_argument("--hosts", type=int, default=3, help="light hosts (default 3)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--capture", type=Path, help="keep the raw `systemctl show` output here")
    ap.add_argument("--lab", action="store_true", help="the running, converged Vagrant lab")
    ap.add_argument("--inventory", type=Path, help="--lab: the lab's inventory (default: "
                    "inventories/vagrant.yaml)")  # fmt: skip
    args = ap.parse_args()
    if args.lab:
        from benchmarks.noop_lab import lab_main

        return lab_main(args.inventory, args.rounds, args.capture)
    if args.vm:
        from gpuprov.testbed.vms import VMLab

        lab = VMLab(1, prefix="gpnb", boot_timeout=1200)  # software emulation, shared cores
    else:
        from gpuprov.testbed.lighthosts import LightHostLab

        lab = LightHostLab(args.hosts, prefix="gpnb")
    with tempfile.TemporaryDirectory(prefix="gpnb-") as tmp, lab:
        inv = lab.write_inventory(Path(tmp) / "lab.yaml")
        yaml = YAML()
        doc = yaml.load(inv.read_text())
        doc["groups"]["gpu"]["vars"] = {
            "gpuprov_stack": False,  # no GPU and no NVIDIA packages here: preflight only
            "gpuprov_preflight_ignore": ["gpus", "headers", "disk", "secure_boot"],
        }
        with inv.open("w") as fh:
            yaml.dump(doc, fh)
        gpuprov("apply", str(inv), "--yes", "-o", "json")  # converge
        runs: dict[str, list[dict]] = {"apply": [], "plan": []}
        for _ in range(args.rounds):
            a = gpuprov("apply", str(inv), "--yes", "-o", "json", "--timings")
            assert a["summary"]["status"] == "up-to-date", a["summary"]
            runs["apply"].append(a["timings"])
            runs["plan"].append(gpuprov("plan", str(inv), "-o", "json", "--timings")["timings"])
        variants = {
            "now": ["-m", "gpuprov.cli"],
            "before the startup cuts": ["-c", BEFORE_CUTS],
            "full teardown": ["-c", FULL_EXIT],
        }
        exits: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        plan_args = ["plan", str(inv), "-o", "json"]
        for _ in range(args.rounds):  # each cut, before/after, interleaved
            for name, how in variants.items():
                exits[name].append(outside([sys.executable, *how, *plan_args]))
        if args.vm:
            vm = lab.vms[0]
            ssh = ["ssh", *lab.ssh_options(), "-p", str(vm.ssh_port), "root@127.0.0.1"]
        else:
            ssh = ["ssh", *lab.ssh_options(), f"root@{lab.hosts[0].address}"]
        loop, show, raw = [], [], ""
        for _ in range(20):
            loop.append(on_host(ssh, LOOP)[0])
            seconds, raw = on_host(ssh, SHOW)
            show.append(seconds)
        works = subprocess.run([*ssh, f"{SHOW} >/dev/null 2>&1"], timeout=60).returncode == 0
        if args.capture and works:
            args.capture.mkdir(parents=True, exist_ok=True)
            (args.capture / "show-gpu-units.txt").write_text(raw)
            out = subprocess.run(
                [*ssh, "systemctl show -p ActiveState -p UnitFileState ssh.service "
                 "gpuprov-absent.service systemd-journald.service"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            (args.capture / "show-ssh-absent-journald.txt").write_text(out.stdout)
            for cmd in ("is-active", "is-enabled"):
                out = subprocess.run(
                    [*ssh, f"for u in {UNITS} ssh; do systemctl {cmd} $u.service; done"],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                (args.capture / f"systemctl-{cmd}.txt").write_text(out.stdout)
    load = os.getloadavg()
    where = "1 VM (systemd)" if args.vm else f"{args.hosts} light hosts"
    print(f"{where}, {args.rounds} rounds, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for command, docs in runs.items():
        phases = median_phases(docs)
        wall = statistics.median(d["wall"] for d in docs)
        trip = statistics.median(d["facts"]["round_trip"]["median"] for d in docs)
        script = statistics.median(d["facts"].get("script", {}).get("median", 0.0) for d in docs)
        print(f"gpuprov {command} (no-op), medians:")
        for name, seconds in phases.items():
            print(f"  {name:<22} {seconds:7.3f} s  {100 * seconds / wall:4.0f}%")
        print(f"  {'wall':<22} {wall:7.3f} s")
        print(f"  fact round trip {trip:.3f} s, of which the script on the host {script:.3f} s")
    print("gpuprov plan from outside, medians (wall, CPU of the gpuprov process):")
    for name, runs in exits.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"  {name:<24} wall {wall:7.3f} s  CPU {cpu:6.3f} s")
    (now_w, now_c), (cut_w, cut_c) = (
        (statistics.median(w for w, _ in exits[k]), statistics.median(c for _, c in exits[k]))
        for k in ("now", "before the startup cuts")
    )
    print(f"  startup cuts: wall -{cut_w - now_w:.3f} s, CPU -{cut_c - now_c:.3f} s")
    m_loop, m_show = statistics.median(loop), statistics.median(show)
    print(f"services section on the host: 10 systemctl runs {m_loop * 1000:.1f} ms", end="")
    if works:
        print(f", one systemctl show {m_show * 1000:.1f} ms ({m_loop / m_show:.1f}x)")
    else:
        print(", one systemctl show: n/a (no systemd running on this host)")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - started:.0f} s)")
    sys.exit(code)
