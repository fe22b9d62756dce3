from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pytest

from gpuprov.errors import LockedError
from gpuprov.rollout.planner import RolloutPlan, Wave
from gpuprov.rollout.state import ERROR_EXCERPT, RolloutLock, StateStore, default_state_path

PLAN = RolloutPlan(
    waves=(Wave(0, "canary", ("a",), True), Wave(1, "wave 1", ("b", "c"))),
    skipped=("d",),
    seed="s",
)


@pytest.fixture
def store(inventory: Path) -> StateStore:
    return StateStore.for_inventory(inventory)


def reader(store: StateStore) -> StateStore:
    """A second, independent connection: sees only what was committed."""
    return StateStore(store.path, store.inventory)


def test_default_path_is_beside_the_inventory(inventory: Path, store: StateStore):
    assert default_state_path(inventory) == inventory.parent / "cluster.yaml.gpuprov-state.db"
    assert store.path == default_state_path(inventory)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_rollout_records_plan_waves_and_hosts(store: StateStore):
    rid = store.create_rollout(PLAN)
    st = reader(store).status(rid)
    assert st.rollout.status == "running" and st.rollout.pid == os.getpid()
    assert st.rollout.plan == PLAN.to_dict()
    assert [(w.name, w.status) for w in st.waves] == [("canary", "pending"), ("wave 1", "pending")]
    assert {h.host: (h.wave, h.status) for h in st.hosts} == {
        "a": (0, "pending"), "b": (1, "pending"), "c": (1, "pending"), "d": (None, "skipped"),
    }  # fmt: skip
    assert store.load_plan(rid) == PLAN


def test_each_transition_is_committed_at_once(store: StateStore):
    rid = store.create_rollout(PLAN)
    other = reader(store)
    for status, step in [
        ("draining", None),
        ("running", "install driver"),
        ("gating", "gate"),
        ("undraining", None),
    ]:
        store.set_host(rid, "a", status, step=step)
        assert other.host_statuses(rid)["a"] == status
    store.set_step(rid, "a", "configure")
    assert other.status(rid).hosts[0].step == "configure"
    store.set_host(rid, "a", "failed", step="gate", error="x" * (ERROR_EXCERPT + 500) + "END")
    row = other.status(rid).hosts[0]
    assert row.status == "failed" and row.step == "gate" and row.finished
    assert len(row.error) == ERROR_EXCERPT and row.error.endswith("END")  # the tail is kept
    store.set_host(rid, "a", "draining")  # a re-run: attempts count, error cleared
    row = other.status(rid).hosts[0]
    assert row.attempts == 2 and row.error is None and row.finished is None
    store.set_wave(rid, 0, "running")
    store.set_wave(rid, 0, "halted", failures=1, allowed=0)
    wave = other.status(rid).waves[0]
    assert (wave.status, wave.failures, wave.allowed) == (
        "halted",
        1,
        0,
    ) and wave.finished >= wave.started


def test_unknown_status_is_a_bug_not_a_row(store: StateStore):
    rid = store.create_rollout(PLAN)
    with pytest.raises(AssertionError):
        store.set_host(rid, "a", "exploded")


def test_create_rollout_is_all_or_nothing(store: StateStore):
    bad = RolloutPlan(
        waves=(Wave(0, "wave 1", ("a", "a")),)
    )  # duplicate host: PK violation mid-way
    with pytest.raises(sqlite3.IntegrityError):
        store.create_rollout(bad)
    assert store.history() == []
    assert store.db.execute("SELECT COUNT(*) FROM waves").fetchone()[0] == 0


def test_history_and_latest_resumable(store: StateStore, inventory: Path, tmp_path: Path):
    assert store.latest_resumable() is None
    first = store.create_rollout(PLAN)
    store.set_rollout(first, "interrupted", "SIGINT")
    assert store.latest_resumable().id == first
    second = store.create_rollout(PLAN)
    store.set_rollout(second, "completed")
    # a later completed rollout supersedes the interrupted one: nothing to resume
    assert store.latest_resumable() is None
    third = store.create_rollout(PLAN)
    store.set_rollout(third, "halted", "wave 1: 2 of 2 failed")
    assert store.latest_resumable().id == third
    assert [(r.id, r.status) for r in store.history()] == [
        (first, "interrupted"),
        (second, "completed"),
        (third, "halted"),
    ]
    assert store.history(tmp_path / "elsewhere.yaml") == []
    assert not store.inventory_changed(store.latest())
    inventory.write_text("cluster: {name: changed}\n")
    assert store.inventory_changed(store.latest())


def test_lock_names_holder_and_is_free_after_release(store: StateStore):
    lock = store.lock()
    assert lock.holder() is None
    with lock:
        assert f"pid {os.getpid()}" in store.lock().holder()
        with pytest.raises(LockedError, match=f"pid {os.getpid()}, started"):
            store.lock().acquire()
    assert lock.holder() is None and not lock.held
    with store.lock() as again:
        assert again.held


def test_state_db_and_lock_are_owner_only_whatever_the_umask(inventory: Path):
    """Issue 13, item 21: the state holds hook output; it must not follow a 0022/0000 umask."""
    path = default_state_path(inventory)
    old = os.umask(0)
    try:
        store = StateStore.for_inventory(inventory)
        store.create_rollout(PLAN)  # writes the WAL
        with store.lock():
            lock = store.path.with_name(store.path.name + ".lock")
            modes = {
                p.name: p.stat().st_mode & 0o777
                for p in (path, lock, path.with_name(path.name + "-wal"))
            }
        store.close()
    finally:
        os.umask(old)
    assert set(modes.values()) == {0o600}, modes


def test_existing_world_readable_state_is_made_private(inventory: Path):
    path = default_state_path(inventory)
    StateStore.for_inventory(inventory).close()
    path.chmod(0o644)
    StateStore.for_inventory(inventory).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_refused_locker_names_a_holder_still_writing_its_pid(tmp_path: Path):
    """A second apply that hits the lock in the instant between the holder's flock and its
    pid write used to report "holder unknown" (seen in CI with two concurrent applies)."""
    import fcntl
    import json
    import threading
    import time

    path = tmp_path / "state.db.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the holder: locked, nothing written yet

    def write_pid_late() -> None:
        time.sleep(0.3)
        os.pwrite(fd, json.dumps({"pid": 424242, "started": "now"}).encode(), 0)

    writer = threading.Thread(target=write_pid_late)
    writer.start()
    try:
        with pytest.raises(LockedError, match="pid 424242, started now"):
            RolloutLock(path).acquire()
    finally:
        writer.join()
        os.close(fd)


def test_a_released_lock_names_no_stale_holder(tmp_path: Path):
    lock = RolloutLock(tmp_path / "state.db.lock")
    lock.acquire()
    lock.release()
    assert (tmp_path / "state.db.lock").read_bytes() == b""  # the next holder writes its own


def _posix_locks_on(path: Path) -> list[str]:
    """This process's POSIX (fcntl) locks on path, from /proc/locks."""
    st = path.stat()
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return [
        line
        for line in Path("/proc/locks").read_text().splitlines()
        if " POSIX " in line and f" {os.getpid()} " in line and inode in line
    ]


def test_opening_the_store_keeps_sqlite_locks(tmp_path: Path):
    """Opening a store must not open and close the database's files behind SQLite: closing
    any descriptor of a file drops all of this process's POSIX locks on it, SQLite's WAL-index
    locks included. A reader elsewhere then took itself for the last connection, truncated
    the -shm under the rollout's mapping, and the rollout died of SIGBUS mid-wave (seen under
    load in test_crash). SQLite holds a lock on -shm for as long as it is connected."""
    (tmp_path / "state.db-shm").touch(mode=0o644)  # as an older version left it
    store = StateStore(tmp_path / "state.db", tmp_path / "inv.yaml")
    store.db.execute("SELECT count(*) FROM sqlite_master").fetchall()
    try:
        assert _posix_locks_on(tmp_path / "state.db-shm"), "SQLite's -shm lock was dropped"
        for suffix in ("", "-wal", "-shm"):
            side = tmp_path / f"state.db{suffix}"
            if side.exists():
                assert side.stat().st_mode & 0o777 == 0o600, suffix
    finally:
        store.close()


def _open_at(state: str, inventory: str, start: float, out: multiprocessing.Queue) -> None:
    while time.time() < start:  # both processes open at the same instant
        pass
    try:
        StateStore.for_inventory(Path(inventory), Path(state)).close()
        out.put("ok")
    except sqlite3.Error as exc:
        out.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_opening_a_new_state_at_once_both_succeed(tmp_path: Path):
    # Two applies let go together (tests/cli/test_apply_state_lighthosts.py) open a state
    # file neither has made yet; the switch to WAL answered "database is locked" to one of
    # them about half the time, before the rollout lock could name the other.
    ctx = multiprocessing.get_context("fork")
    failures = []
    for trial in range(20):
        inventory = tmp_path / f"inv{trial}.yaml"
        inventory.write_text("cluster: {}\n")
        state, out = tmp_path / f"state{trial}.db", ctx.Queue()
        start = time.time() + 0.3
        procs = [
            ctx.Process(target=_open_at, args=(str(state), str(inventory), start, out))
            for _ in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        results = [out.get(timeout=5) for _ in procs]
        failures += [r for r in results if r != "ok"]
    assert not failures, failures
