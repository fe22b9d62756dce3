"""`python -m benchmarks.noop_breakdown --lab`: the full GPU stack's no-op where it runs.

On the running Vagrant lab that `make demo` converged (mirror01 and the GPU hosts: systemd,
driver, fabric manager, CUDA, containerd, DCGM, the mirror's nginx, registry and model
registry), ROUNDS interleaved `gpuprov apply --yes` and `gpuprov plan` with `--timings -o
json`: the phases' medians, then each host's connect, fact round trip and the script's own
time on the host (a mirror host's script is not a GPU host's). Then, on every host, the
NodeFacts script itself traced section by section (`bash -x`, each line stamped with
bash's `$EPOCHREALTIME`: no process per stamp); the managed files' digests both ways (a
process chain per file against one `sha256sum`), and on the mirror host its units both
ways (ten `systemctl is-active|is-enabled` runs against one `systemctl show`), each
interleaved. `--capture DIR` keeps the mirror's raw `systemctl` answers (test fixtures).

Converges nothing and boots nothing: without a running, converged lab it says why and
exits 2.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INVENTORY = REPO / "inventories" / "vagrant.yaml"
TRACE = re.compile(r"\++(?P<t>\d{1,12}\.\d{1,9}) (?P<cmd>.*)")
SECTION = re.compile(r"(?:begin |printf '@@gpuprov:begin )(?P<name>[a-z0-9-]{1,40})")


class NoLab(Exception):
    """Why there is no converged lab to measure (printed, exit 2)."""


def run_gpuprov(*args: str) -> dict:
    """`gpuprov ARGS -o json` from the repository root (the lab inventory's mirror keyring
    is relative to it, as `make demo` runs it)."""
    import json

    proc = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *args, "-o", "json"],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    if proc.returncode != 0:
        raise NoLab(f"`gpuprov {' '.join(args)}` exited {proc.returncode}: "
                    f"{(proc.stderr or proc.stdout).strip()[-1500:]}")  # fmt: skip
    return json.loads(proc.stdout)


def load_lab(inventory: Path) -> list:
    """The lab's hosts, each answering SSH; NoLab otherwise."""
    from gpuprov.errors import InputError
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.lab.snapshot import ssh_command

    if not inventory.is_file():
        raise NoLab(f"{inventory}: not found")
    try:
        cluster = load_inventory(inventory)
    except InputError as exc:
        raise NoLab(f"{inventory} does not load ({str(exc).strip().splitlines()[0]}): "
                    "no lab made by `make demo` here") from exc  # fmt: skip
    hosts = list(cluster.hosts.values())
    for host in hosts:
        try:
            proc = subprocess.run([*ssh_command(host), "true"], capture_output=True,
                                  text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired:
            proc = None
        if proc is None or proc.returncode != 0:
            why = proc.stderr.strip()[-300:] if proc else "no answer in 60 s"
            raise NoLab(f"{host.name} ({host.address}) does not answer SSH ({why}): "
                        "is the lab running? (`make demo`)")  # fmt: skip
    return hosts


def converged(inventory: Path) -> None:
    """NoLab unless every host is ready and `gpuprov plan` finds nothing to change."""
    summary = run_gpuprov("plan", str(inventory))
    hosts = summary.get("hosts", {})
    not_ready = [f"{n}: {h.get('status')} ({h.get('error')})" for n, h in hosts.items()
                 if h.get("status") != "ok"]  # fmt: skip
    changing = [f"{n}: {len(h.get('changes', []))} change(s)" for n, h in hosts.items()
                if h.get("changes")]  # fmt: skip
    if not_ready or changing:
        raise NoLab("the lab is not converged (" + "; ".join(not_ready + changing)
                    + "): run `make demo` first")  # fmt: skip


def on_host(ssh: list[str], script: str, *, sudo: bool, timeout: float = 300) -> tuple[str, str]:
    """(stdout, stderr) of `script` run by bash on the host (root where the host needs sudo)."""
    remote = "sudo -n bash -s" if sudo else "bash -s"
    proc = subprocess.run([*ssh, remote], input=script, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    return proc.stdout, proc.stderr


def node_facts_command(host) -> str:
    """The NodeFacts command the deploys read on this host (mirror section on a mirror)."""
    from gpuprov.facts.node_facts import NodeFacts
    from gpuprov.paths import CDI_SPEC, IDENTITY_FILE, MANAGED_PATHS, MIRROR_MANAGED_PATHS

    mirror = host.role == "mirror"
    return NodeFacts().command(
        paths=tuple(MANAGED_PATHS) + (MIRROR_MANAGED_PATHS if mirror else ()),
        cdi_spec=CDI_SPEC, identity_file=IDENTITY_FILE, mirror=mirror,
    )  # fmt: skip


def section_times(trace: str) -> dict[str, float]:
    """Seconds per section from a `bash -x` trace stamped with $EPOCHREALTIME: from a
    section's `begin` to the next one's (the last one: to the trace's last line)."""
    marks: list[tuple[str, float]] = []
    last = None
    for line in trace.splitlines():
        m = TRACE.fullmatch(line.strip())
        if m is None:
            continue
        last = float(m["t"])
        if (s := SECTION.match(m["cmd"])) is not None:
            marks.append((s["name"], last))
    if last is None:
        return {}
    ends = [t for _, t in marks[1:]] + [last]
    out: dict[str, float] = {}
    for (name, start), end in zip(marks, ends, strict=True):
        out[name] = out.get(name, 0.0) + end - start
    return out


def timed(ssh: list[str], script: str, *, sudo: bool) -> float:
    """`script`'s runtime by the host's clock (the SSH session is not the question)."""
    wrapped = (f"_t0=$EPOCHREALTIME; {{ {script}\n}} >/dev/null 2>&1; "
               'echo "$_t0 $EPOCHREALTIME"')  # fmt: skip
    out, err = on_host(ssh, wrapped, sudo=sudo)
    t0, t1 = out.split()[-2:]
    return float(t1) - float(t0)


def mirror_units_both_ways(ssh: list[str], sudo: bool, rounds: int) -> tuple[float, float]:
    """Medians (s): the mirror's units asked unit by unit (before) and by one `systemctl
    show` (now), interleaved."""
    from gpuprov.facts import mirror_state
    from gpuprov.paths import MIRROR_UNITS, PACKAGED_UNITS

    units = " ".join(u.removesuffix(".service") for u in (*MIRROR_UNITS, *PACKAGED_UNITS))
    loop = (f"for _u in {units}; do systemctl is-active $_u.service; "
            "systemctl is-enabled $_u.service; done")  # fmt: skip
    show = mirror_state.UNIT_STATES.format(units=units)
    before, after = [], []
    for _ in range(rounds):
        before.append(timed(ssh, loop, sudo=sudo))
        after.append(timed(ssh, show, sudo=sudo))
    return statistics.median(before), statistics.median(after)


# The managed files' digests as DeployExtras read them before the cut: three processes
# per file (a subshell, sha256sum, cut).
PER_FILE_DIGESTS = (
    'for f in {paths}; do if [ -f "$f" ]; then '
    'printf "file %s %s\\n" "$(sha256sum < "$f" | cut -d" " -f1)" "$f"; '
    'else printf "file - %s\\n" "$f"; fi; done'
)


def digests_both_ways(ssh: list[str], sudo: bool, host, rounds: int) -> tuple[float, float]:
    """Medians (s): the host's managed files digested one process chain per file (before)
    and by one `sha256sum` (now), interleaved."""
    import shlex

    from gpuprov.facts.files import digests_command
    from gpuprov.paths import MANAGED_PATHS, MIRROR_MANAGED_PATHS

    paths = tuple(MANAGED_PATHS) + (MIRROR_MANAGED_PATHS if host.role == "mirror" else ())
    before_cmd = PER_FILE_DIGESTS.format(paths=" ".join(shlex.quote(x) for x in paths))
    now_cmd = f"( {digests_command(paths)} )"
    before, after = [], []
    for _ in range(rounds):
        before.append(timed(ssh, before_cmd, sudo=sudo))
        after.append(timed(ssh, now_cmd, sudo=sudo))
    return statistics.median(before), statistics.median(after)


def capture_mirror_units(ssh: list[str], sudo: bool, out: Path) -> None:
    from gpuprov.paths import MIRROR_UNITS, PACKAGED_UNITS

    units = [
        u if u.endswith(".service") else f"{u}.service" for u in (*MIRROR_UNITS, *PACKAGED_UNITS)
    ]
    out.mkdir(parents=True, exist_ok=True)
    show, _ = on_host(ssh, "systemctl show -p ActiveState -p UnitFileState " + " ".join(units),
                      sudo=sudo)  # fmt: skip
    (out / "show-mirror-units.txt").write_text(show)
    for cmd in ("is-active", "is-enabled"):
        text, _ = on_host(ssh, f"for u in {' '.join(units)}; do systemctl {cmd} $u; done",
                          sudo=sudo)  # fmt: skip
        (out / f"mirror-{cmd}.txt").write_text(text)


def lab_main(inventory: Path | None, rounds: int, capture: Path | None) -> int:
    from benchmarks.noop_breakdown import median_phases
    from gpuprov.lab.snapshot import ssh_command

    inv = (inventory or DEFAULT_INVENTORY).resolve()
    started = time.perf_counter()
    try:
        hosts = load_lab(inv)
        converged(inv)
    except NoLab as exc:
        print(f"noop_breakdown --lab: no converged lab to measure: {exc}")
        return 2
    runs: dict[str, list[dict]] = {"apply": [], "plan": []}
    for _ in range(rounds):
        a = run_gpuprov("apply", str(inv), "--yes", "--timings")
        if a["summary"]["status"] != "up-to-date":
            print(f"noop_breakdown --lab: apply was not a no-op: {a['summary']}")
            return 1
        runs["apply"].append(a["timings"])
        runs["plan"].append(run_gpuprov("plan", str(inv), "--timings")["timings"])
    load = os.getloadavg()
    names = [h.name for h in hosts]
    print(f"the lab ({', '.join(names)}), {rounds} rounds, load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip
    for command, docs in runs.items():
        wall = statistics.median(d["wall"] for d in docs)
        print(f"gpuprov {command} (no-op), medians:")
        for name, seconds in median_phases(docs).items():
            print(f"  {name:<22} {seconds:7.3f} s  {100 * seconds / wall:4.0f}%")
        print(f"  {'wall':<22} {wall:7.3f} s")
        for name in names:
            each = [d.get("hosts", {}).get(name, {}) for d in docs]
            parts = []
            for key in ("connect", "round_trip", "script"):
                values = [e[key] for e in each if key in e]
                if values:
                    parts.append(f"{key.replace('_', ' ')} {statistics.median(values):.3f} s")
            print(f"  {name}: {', '.join(parts)}")
    print("the NodeFacts script on each host, traced (bash -x, $EPOCHREALTIME), medians (s):")
    for host in hosts:
        ssh = ssh_command(host)
        sudo = host.ssh.sudo and host.ssh.user != "root"
        script = "PS4='+$EPOCHREALTIME '\nset -x\n" + node_facts_command(host)
        traces = []
        for _ in range(rounds):
            _, err = on_host(ssh, script, sudo=sudo)
            traces.append(section_times(err))
        sections = {k: statistics.median(t.get(k, 0.0) for t in traces) for k in traces[0]}
        total = sum(sections.values())
        top = sorted(sections.items(), key=lambda kv: -kv[1])
        print(f"  {host.name} ({host.role}): {total:.3f} s traced; " + ", ".join(
            f"{k} {v:.3f}" for k, v in top if v >= 0.005))  # fmt: skip
        per_file, one = digests_both_ways(ssh, sudo, host, max(rounds, 5))
        print(f"  {host.name} managed files' digests: a process chain per file "
              f"{per_file:.3f} s, one sha256sum {one:.3f} s ({per_file / one:.1f}x)")  # fmt: skip
        if host.role == "mirror":
            loop, show = mirror_units_both_ways(ssh, sudo, max(rounds, 5))
            print(f"  {host.name} units: unit by unit {loop:.3f} s, one systemctl show "
                  f"{show:.3f} s ({loop / show:.1f}x)")  # fmt: skip
            if capture:
                capture_mirror_units(ssh, sudo, capture)
                print(f"  {host.name}: raw systemctl answers kept in {capture}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0
