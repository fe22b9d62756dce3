"""A rollout in another process, killed (-9 or SIGINT) mid-wave, then resumed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from gpuprov.errors import ExitCode, LockedError
from gpuprov.rollout.hooks import LocalHookRunner
from gpuprov.rollout.planner import plan_rollout
from gpuprov.rollout.runner import run_rollout
from gpuprov.rollout.state import (
    HOST_STATUSES,
    IN_FLIGHT,
    RolloutLock,
    StateStore,
    default_state_path,
)

SUPPORT = Path(__file__).with_name("support.py")
SUPPORT_GEVENT = Path(__file__).with_name("support_gevent.py")


def start(inventory: Path, log: Path, *args: str, gevent: bool = False) -> subprocess.Popen:
    script = SUPPORT_GEVENT if gevent else SUPPORT
    return subprocess.Popen(
        [sys.executable, str(script), str(inventory), str(log), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout: float = 30.0, proc: subprocess.Popen | None = None):
    """predicate() once true; proc: the rollout process that must make it true, whose
    early exit fails at once, with its stderr."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"rollout process exited {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def host_rows(inventory: Path) -> dict[str, str]:
    db = default_state_path(inventory)
    if not db.exists():
        return {}
    try:
        # closed at once (a `with connect()` block only commits): a poll every 20 ms must
        # not keep a reader on the file the rollout process is setting up
        with closing(sqlite3.connect(db, timeout=5)) as con:
            return dict(con.execute("SELECT host, status FROM host_runs"))
    except sqlite3.OperationalError:  # schema not created yet
        return {}


def status_text(inventory: Path) -> str:
    from click.testing import CliRunner
    from gpuprov.cli import gpuprov

    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        gpuprov, ["rollout", "status", str(inventory)]
    )
    assert result.exit_code == 0, result.output
    return result.output


def kill(proc: subprocess.Popen, sig: int) -> int:
    os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout=30)
    finally:
        proc.stdout.close()
        proc.stderr.close()


def check_consistent(store: StateStore, rollout_id: int) -> None:
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    st = store.status(rollout_id)
    assert all(h.status in HOST_STATUSES for h in st.hosts)
    # no wave after the first unfinished one has started
    unfinished = [w.index for w in st.waves if w.status != "completed"]
    if unfinished:
        later = {h.wave for h in st.hosts if h.status != "pending"} - {None}
        assert all(w <= unfinished[0] for w in later)


# kill once this many hosts are done; once under gevent, as the CLI runs the engine
@pytest.mark.parametrize(("when", "gevent"), [(1, False), (3, False), (5, False), (3, True)])
def test_kill_9_mid_wave_then_resume_reruns_no_completed_host(
    support, inventory, tmp_path, when, gevent
):
    log = tmp_path / "log"
    # Staggered hosts finish one by one: with equal sleeps a wave's hosts finished together
    # and "5 done, some running" lasted milliseconds (missed under load).
    proc = start(inventory, log, "--hosts", "8", "--sleep", "0.4", "--stagger", "0.5",
                 gevent=gevent)  # fmt: skip

    def mid_wave() -> bool:
        rows = host_rows(inventory).values()
        return sum(s == "done" for s in rows) >= when and any(s in IN_FLIGHT for s in rows)

    # Freeze the process, then confirm it is still mid-wave, so a loaded machine cannot
    # move it past the moment we meant to kill it.
    while True:
        wait_for(mid_wave, timeout=120, proc=proc)
        proc.send_signal(signal.SIGSTOP)
        if mid_wave():
            break
        proc.send_signal(signal.SIGCONT)
    assert kill(proc, signal.SIGKILL) == -signal.SIGKILL

    store = StateStore.for_inventory(inventory)
    record = store.latest_resumable()
    assert record is not None and record.status == "running"  # killed: nobody marked it
    check_consistent(store, record.id)
    before = store.host_statuses(record.id)
    done_before = {h for h, s in before.items() if s == "done"}
    midrun = {h for h, s in before.items() if s in IN_FLIGHT}
    assert len(done_before) >= when and midrun

    # the OS released the dead process's lock: a resume can take it
    resume_log = tmp_path / "resume-log"
    # (children of the killed process may still be exiting on a loaded machine)
    wait_for(lambda: RolloutLock(Path(f"{default_state_path(inventory)}.lock")).holder() is None)
    assert "stopped (its process died; resumable)" in status_text(inventory)
    again = start(inventory, resume_log, "--hosts", "8", "--sleep", "0", "--resume", gevent=gevent)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    report = json.loads(out)
    assert report["status"] == "completed" and report["rollout_id"] == record.id
    rerun = {host for what, host in support.log_lines(resume_log) if what == "work-start"}
    assert not rerun & done_before, "a completed host was run again"
    assert midrun <= rerun  # hosts cut off mid-run are run again
    assert rerun | done_before == set(before)
    st = store.status(record.id)
    assert {h.status for h in st.hosts} == {"done"}
    assert all(h.attempts == (2 if h.host in midrun else 1) for h in st.hosts)


def test_second_rollout_is_locked_out_and_kill_9_frees_the_lock(support, inventory, tmp_path):
    log = tmp_path / "log"
    proc = start(inventory, log, "--hosts", "4", "--sleep", "5")
    # (a loaded machine may take long to start Python and import the engine)
    wait_for(lambda: any(s in IN_FLIGHT for s in host_rows(inventory).values()), 120, proc)
    # Frozen, it holds the lock however long the checks below take on a loaded machine
    # (running, it could finish its 4 hosts and release the lock before the second try).
    proc.send_signal(signal.SIGSTOP)
    assert f"running (pid {proc.pid}" in status_text(inventory)
    hosts = support.make_hosts(4)
    policy = support.hook_policy(log, canary=1)
    store = StateStore.for_inventory(inventory)
    with pytest.raises(LockedError) as err:
        run_rollout(
            plan_rollout(hosts, policy), policy, store,
            work=support.ShellWork(log), gate=support.ShellGate(log), hooks=LocalHookRunner(),
        )  # fmt: skip
    assert f"pid {proc.pid}" in str(err.value) and "started 20" in str(err.value)
    assert err.value.exit_code == ExitCode.LOCKED
    assert len(store.history()) == 1  # the refused rollout recorded nothing

    kill(proc, signal.SIGKILL)
    # The OS frees the lock once every process holding it is gone; a child caught between
    # fork and exec still shares the lock's open file until its exec, so wait (bounded).
    lock_path = Path(f"{default_state_path(inventory)}.lock")
    wait_for(lambda: RolloutLock(lock_path).holder() is None)
    with store.lock() as lock:
        assert lock.held


@pytest.mark.parametrize("gevent", [False, True])
def test_sigint_marks_interrupted_and_exits_130(support, inventory, tmp_path, gevent):
    log = tmp_path / "log"
    # 2 s a host: a loaded machine that keeps this process off the CPU for a while must
    # not miss every mid-wave moment (0.5 s ones were missed, and the rollout finished).
    proc = start(inventory, log, "--hosts", "8", "--sleep", "2", gevent=gevent)

    def mid_wave() -> bool:
        rows = host_rows(inventory).values()
        return sum(s == "done" for s in rows) >= 1 and any(s in IN_FLIGHT for s in rows)

    # Freeze, confirm, then interrupt: the signal lands at the moment we checked.
    while True:
        wait_for(mid_wave, 120, proc)
        proc.send_signal(signal.SIGSTOP)
        if mid_wave():
            break
        proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGINT)  # pending while stopped, delivered on SIGCONT
    rc = kill(proc, signal.SIGCONT)
    assert rc == ExitCode.INTERRUPTED
    store = StateStore.for_inventory(inventory)
    record = store.latest_resumable()
    assert record.status == "interrupted" and "SIGINT" in record.reason
    waves = store.status(record.id).waves
    assert "interrupted" in {w.status for w in waves}
    # nothing new started after the signal: no host of a later wave was touched
    check_consistent(store, record.id)
    done_before = {h for h, s in store.host_statuses(record.id).items() if s == "done"}
    resume_log = tmp_path / "resume-log"
    again = start(inventory, resume_log, "--hosts", "8", "--sleep", "0", "--resume", gevent=gevent)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert json.loads(out)["status"] == "completed"
    rerun = {host for what, host in support.log_lines(resume_log) if what == "work-start"}
    assert rerun and not rerun & done_before
