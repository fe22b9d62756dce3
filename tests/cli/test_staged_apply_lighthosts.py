"""`gpuprov apply` as a staged rollout, the real CLI in a subprocess against 16 light hosts
(sshd in network namespaces, four per rack). Root only.

Each test uses its own `gpuprov_root` (where preflight writes /etc/gpuprov/host.json on
the hosts) and its own inventory directory (the state file lives beside the inventory),
so the tests share one lab without sharing state. Failures are real: a deploy fails
where /etc/gpuprov is a file, a host loses power mid-wave, the control process is
SIGKILLed mid-wave. (Hosts preflight refuses are in no wave: test_preflight_lighthosts.)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.host

N_HOSTS = 16
IN_FLIGHT = ("draining", "running", "gating", "undraining")


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(N_HOSTS, prefix="stg") as lab:
        yield lab


def gpuprov(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


class Site:
    """One test's inventory, hook log and host-side root."""

    def __init__(
        self,
        lab,
        tmp: Path,
        name: str,
        rollout: dict,
        host_vars: dict | None = None,
        mirror: bool = False,
    ):
        from gpuprov.testbed.inventory import write_lab_inventory

        self.lab, self.dir, self.root = lab, tmp, f"/var/tmp/{name}"
        self.log = tmp / "hooks.log"
        self.names = [h.name for h in lab.hosts]
        for n in self.names:  # a clean slate on every host (the lab is shared)
            lab.exec(n, f"rm -rf {self.root}")
        path = write_lab_inventory(
            tmp / "lab.yaml",
            hosts=[(h.name, h.address) for h in lab.hosts],
            key=lab.key_path,
            known_hosts=lab.known_hosts_path,
            name=name,
            os="debian12",
            mirror=mirror,
        )
        yaml = YAML()
        data = yaml.load(path.read_text())
        gpu = data["groups"]["gpu"]
        for group in data["groups"].values():
            group["vars"] = {
                "gpuprov_min_free_gb": 0.1,
                "gpuprov_preflight_ignore": ["headers", "gpus"],
                "gpuprov_root": self.root,
            }
        for host, hvars in (host_vars or {}).items():
            gpu["hosts"][host]["vars"] = hvars
        hook = f"echo {{kind}} {{{{host}}}} $(date +%s.%N) >> {self.log}"
        data["cluster"]["rollout"] = {
            "drain": hook.format(kind="drain"),
            "undrain": hook.format(kind="undrain"),
            **rollout,
        }
        with path.open("w") as fh:
            yaml.dump(data, fh)
        self.inventory = path
        self.racks = {h: v["rack"] for h, v in gpu["hosts"].items()}
        self.gpu = list(gpu["hosts"])

    @property
    def db(self) -> Path:
        return self.inventory.with_name(self.inventory.name + ".gpuprov-state.db")

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return gpuprov(*args, cwd=self.dir, **kw)

    def apply(self, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
        proc = self.run("apply", str(self.inventory), "--yes", "--output", "json", *args)
        try:
            return proc, json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"no JSON (exit {proc.returncode}): {proc.stderr}") from None

    def waves(self) -> list[dict]:
        proc = self.run("rollout", "plan", str(self.inventory), "--output", "json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["waves"]

    def hooks(self) -> list[tuple[str, str, float]]:
        if not self.log.exists():
            return []
        return [(k, h, float(t)) for k, h, t in (ln.split() for ln in self.log.read_text().splitlines())]  # fmt: skip

    def identity_mtime(self, host: str) -> float | None:
        proc = self.lab.exec(host, f"stat -c %.9Y {self.root}/etc/gpuprov/host.json", check=False)
        return float(proc.stdout) if proc.returncode == 0 else None

    def host_rows(self) -> dict[str, str]:
        if not self.db.exists():
            return {}
        try:
            with sqlite3.connect(self.db, timeout=5) as con:
                return dict(con.execute("SELECT host, status FROM host_runs"))
        except sqlite3.OperationalError:
            return {}


def wait_for(predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_order_failure_domains_dry_run_and_noop(lab, tmp_path: Path):
    gate = "date +%s.%N > /var/tmp/order/gate && test -s /var/tmp/order/etc/gpuprov/host.json"
    site = Site(lab, tmp_path, "order", {
        "canary": 1, "waves": ["25%", "100%"], "max_per_domain": 2, "gates": [{"command": gate}],
    }, mirror=True)  # fmt: skip
    [mirror] = [n for n in site.names if n not in site.gpu]

    proc, doc = site.apply("--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert doc["plan"]["summary"]["changes"] == N_HOSTS
    assert not site.db.exists() and not site.hooks()  # a dry run writes no rollout state
    assert all(site.identity_mtime(n) is None for n in site.names)

    proc, doc = site.apply()
    assert proc.returncode == 0, proc.stderr
    report = doc["rollout"]
    assert report["status"] == "completed" and sorted(report["done"]) == site.gpu
    assert doc["summary"] == {"hosts": N_HOSTS, "changed": N_HOSTS, "failed": 0, "status": "completed"}  # fmt: skip
    assert list(doc["infrastructure"]["hosts"]) == [mirror]  # applied directly, not drained
    waves = report["plan"]["waves"]
    assert waves[0]["canary"] and len(waves[0]["hosts"]) == 1
    assert sorted(h for w in waves for h in w["hosts"]) == site.gpu
    for wave in waves:  # never more than 2 hosts of one rack at once
        per_rack = Counter(site.racks[h] for h in wave["hosts"])
        assert max(per_rack.values()) <= 2, (wave, per_rack)

    # mirror first; then drain -> deploy -> gate -> undrain per host, waves one after another
    events = {(k, h): t for k, h, t in site.hooks()}
    assert len(events) == 2 * len(site.gpu)
    assert site.identity_mtime(mirror) < min(events.values())
    for host in site.gpu:
        gated = float(lab.exec(host, "cat /var/tmp/order/gate").stdout)
        deployed = site.identity_mtime(host)
        assert events["drain", host] < deployed < gated < events["undrain", host], host
    for before, after in zip(waves, waves[1:], strict=False):
        last_undrain = max(events["undrain", h] for h in before["hosts"])
        assert last_undrain < min(events["drain", h] for h in after["hosts"])

    # converged: one dry run, no rollout, no hook, no new state row
    mtimes = {n: site.identity_mtime(n) for n in site.names}
    started = time.monotonic()
    proc, doc = site.apply()
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert doc["summary"]["status"] == "up-to-date" and sorted(doc["skipped"]) == site.gpu
    assert len(site.hooks()) == 2 * len(site.gpu)
    assert mtimes == {n: site.identity_mtime(n) for n in site.names}
    with sqlite3.connect(site.db) as con:
        assert con.execute("SELECT count(*) FROM rollouts").fetchone()[0] == 1
    print(f"no-op apply of {N_HOSTS} hosts: {elapsed:.1f}s")

    # --limit one host: still staged (a canary of one, drained and undrained)
    one = site.gpu[5]
    lab.exec(one, "rm /var/tmp/order/etc/gpuprov/host.json")
    proc, doc = site.apply("--limit", one)
    assert proc.returncode == 0, proc.stderr
    assert doc["rollout"]["plan"]["waves"] == [
        {"index": 0, "name": "canary", "hosts": [one], "canary": True}
    ]
    assert [(k, h) for k, h, _ in site.hooks()[-2:]] == [("drain", one), ("undrain", one)]


def test_failing_canary_stops_everything(lab, tmp_path: Path):
    site = Site(lab, tmp_path, "canary", {"canary": 1, "waves": ["50%", "100%"]})
    [canary] = site.waves()[0]["hosts"]
    # the canary's deploy fails for real: /etc/gpuprov is a file (a host preflight refuses
    # is in no wave at all: tests/cli/test_preflight_lighthosts.py)
    lab.exec(canary, f"mkdir -p {site.root}/etc && echo x > {site.root}/etc/gpuprov")

    state = tmp_path / "elsewhere" / "rollouts.db"
    proc, doc = site.apply("--state", str(state))
    assert proc.returncode == 4, proc.stderr
    assert state.exists() and not site.db.exists()
    report = doc["rollout"]
    assert report["status"] == "halted" and "canary" in report["reason"]
    [failure] = report["failed"]
    assert failure["host"] == canary and "host.json" in failure["step"]
    assert "File exists" in failure["error"]
    assert [w["status"] for w in report["waves"]] == ["halted", "pending", "pending"]
    assert site.hooks()[0][:2] == ("drain", canary) and len(site.hooks()) == 1  # stays drained
    assert all(site.identity_mtime(n) is None for n in site.names)


def test_two_of_ten_failing_halts_and_later_waves_never_start(lab, tmp_path: Path):
    policy = {"canary": 1, "waves": [10, "100%"], "max_fail": "10%"}
    site = Site(lab, tmp_path, "maxfail", policy)
    canary, wave1, wave2 = (w["hosts"] for w in site.waves())
    assert len(wave1) == 10 and len(wave2) == N_HOSTS - 11
    broken = wave1[3:5]
    for host in broken:  # the deploy's mkdir fails for real: /etc/gpuprov is a file
        lab.exec(host, f"mkdir -p {site.root}/etc && echo x > {site.root}/etc/gpuprov")

    proc, doc = site.apply()
    assert proc.returncode == 4, proc.stderr
    report = doc["rollout"]
    assert report["status"] == "halted"
    assert report["reason"] == "wave 1: 2 of 10 hosts failed (max_fail 10% allows 1)"
    assert sorted(f["host"] for f in report["failed"]) == sorted(broken)
    for failure in report["failed"]:
        assert "host.json" in failure["step"] and "File exists" in failure["error"]
    assert sorted(report["done"]) == sorted(canary + [h for h in wave1 if h not in broken])
    assert sorted(report["pending"]) == sorted(wave2)
    hooks = site.hooks()
    touched = {h for _, h, _ in hooks}
    assert touched == set(canary + wave1)  # later waves: not even drained
    assert not {h for k, h, _ in hooks if k == "undrain"} & set(broken)  # failed stay drained
    for host in wave2:
        assert site.identity_mtime(host) is None
    # the summary a person reads names host, wave, step and the stderr excerpt
    for host in broken:
        [line] = [ln for ln in proc.stderr.splitlines() if f"failed {host} [wave 1] at " in ln]
        assert "Record the host's identity" in line and "File exists" in line
    assert "File exists" in proc.stderr
    proc = site.run("rollout", "status", str(site.inventory))
    assert proc.returncode == 0 and all(h in proc.stdout for h in broken)


def test_kill_9_mid_wave_then_resume_reruns_no_completed_host(lab, tmp_path: Path):
    gate = "sleep 0.3"
    site = Site(lab, tmp_path, "resume", {
        "canary": 1, "waves": ["30%", "60%", "100%"], "gates": [{"command": gate}],
    })  # fmt: skip
    out = (tmp_path / "first.out").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuprov.cli", "apply", str(site.inventory), "--yes"],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip

    def mid_wave() -> bool:
        rows = site.host_rows().values()
        return sum(s == "done" for s in rows) >= 4 and any(s in IN_FLIGHT for s in rows)

    try:
        while True:  # freeze, confirm still mid-wave, then kill: load cannot move it past
            wait_for(mid_wave)
            proc.send_signal(signal.SIGSTOP)
            if mid_wave():
                break
            proc.send_signal(signal.SIGCONT)
        # the frozen rollout holds the lock: a second apply fails at once, naming it
        second = site.run("apply", str(site.inventory), "--yes")
        assert second.returncode == 5, second.stderr
        assert f"pid {proc.pid}" in second.stderr
        proc.kill()
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
    before = site.host_rows()
    done = sorted(h for h, s in before.items() if s == "done")
    cut = sorted(h for h, s in before.items() if s in IN_FLIGHT)
    assert done and cut
    mtimes = {h: site.identity_mtime(h) for h in done}

    site.inventory.write_text(site.inventory.read_text() + "# edited after the crash\n")
    proc, doc = site.apply("--resume")
    assert proc.returncode == 0, proc.stderr
    assert "changed since rollout 1 started" in proc.stderr
    report = doc["rollout"]
    assert report["status"] == "completed" and sorted(report["done"]) == site.names
    drains = Counter(h for k, h, _ in site.hooks() if k == "drain")
    assert all(drains[h] == 1 for h in done), drains  # no completed host ran again
    assert all(drains[h] >= 1 for h in site.names)
    assert mtimes == {h: site.identity_mtime(h) for h in done}
    assert all(site.identity_mtime(h) is not None for h in site.names)

    proc = site.run("apply", str(site.inventory), "--resume", "--yes")
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr


def test_host_vanishing_mid_wave_counts_as_failed(lab, tmp_path: Path):
    site = Site(lab, tmp_path, "vanish", {
        "canary": 1, "waves": ["100%"], "max_fail": 1, "gates": [{"command": "sleep 1"}],
    })  # fmt: skip
    victim = site.waves()[1]["hosts"][2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuprov.cli", "apply", str(site.inventory), "--yes", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(lambda: site.host_rows().get(victim) in ("running", "gating"))
        proc.send_signal(signal.SIGSTOP)
        try:
            lab.kill(victim)  # power cut while its deploy or gate is in flight
        finally:
            proc.send_signal(signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 1, stderr  # completed within max_fail, one host failed
        report = json.loads(stdout)["rollout"]
        assert report["status"] == "completed"
        [failure] = report["failed"]
        assert failure["host"] == victim and failure["wave"] == "wave 1"
        assert sorted(report["done"]) == sorted(n for n in site.names if n != victim)
        assert ("undrain", victim) not in {(k, h) for k, h, _ in site.hooks()}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        lab.start_host(victim)


def on_terminal(site: Site, answers: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run apply on a pseudo-terminal (`script`), typing `answers` at its prompts."""
    import shlex

    argv = [sys.executable, "-m", "gpuprov.cli", "apply", str(site.inventory), *args]
    return subprocess.run(
        ["script", "-qec", shlex.join(argv), "/dev/null"],
        input=answers, capture_output=True, text=True, cwd=site.dir, timeout=240,
        env={**os.environ, "COLUMNS": "200", "TERM": "xterm"},
    )  # fmt: skip


def test_terminal_live_progress_approvals_and_resume(lab, tmp_path: Path):
    site = Site(lab, tmp_path, "tty", {"canary": 1, "waves": ["100%"], "pause_between_waves": True})
    chosen = site.gpu[:3]
    limit = ("--limit", ",".join(chosen))
    proc = on_terminal(site, "y\nn\n", *limit)  # apply: yes; start wave 1: no
    assert proc.returncode == 130, proc.stdout
    assert "Apply these changes?" in proc.stdout and "Start wave 1 (2 hosts)?" in proc.stdout
    assert "Rollout 1 interrupted: 1 hosts done" in proc.stdout
    assert len([h for k, h, _ in site.hooks() if k == "undrain"]) == 1

    proc = on_terminal(site, "y\n", "--resume")  # resume: yes (its first wave needs no approval)
    assert proc.returncode == 0, proc.stdout
    assert "Resume rollout 1?" in proc.stdout and "Rollout 1 completed: 3 hosts done" in proc.stdout
    assert sorted(h for k, h, _ in site.hooks() if k == "undrain") == sorted(chosen)
