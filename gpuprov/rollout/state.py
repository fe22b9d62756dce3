"""Crash-safe rollout state: one SQLite file beside the inventory.

Every transition is its own committed statement (autocommit, WAL), so a `kill -9` at any
instant leaves the last committed transition, never a half-written one.
Creating a rollout (its row, its waves, a row per host) is one transaction: all or nothing.

Hosts whose run was cut short keep their in-flight status (draining/running/gating/
undraining); a resume re-runs every host that is not `done` or `skipped`.

Two rollouts of one inventory must never run at once. The guard is `flock` on a lock file
beside the database, held for the rollout's lifetime: the kernel drops it when the process
dies, so a killed rollout leaves no stale lock to clean up by hand.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuprov.errors import LockedError
from gpuprov.rollout.planner import RolloutPlan

ROLLOUT_STATUSES = ("running", "completed", "halted", "interrupted", "failed", "abandoned")
WAVE_STATUSES = ("pending", "running", "completed", "halted", "interrupted")
HOST_STATUSES = (
    "pending",
    "draining",
    "running",
    "gating",
    "undraining",
    "done",
    "failed",
    "skipped",
)
IN_FLIGHT = ("draining", "running", "gating", "undraining")
RESUMABLE = ("interrupted", "halted", "running")
# A host whose last recorded run (skipped and never-started runs aside) ended in one of
# these may still be drained: its drain hook ran and its undrain hook did not pass.
MAYBE_DRAINED = (*IN_FLIGHT, "failed")
ERROR_EXCERPT = 2000  # characters of stderr kept per failed host

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    inventory TEXT NOT NULL,
    inventory_hash TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    reason TEXT,
    pid INTEGER NOT NULL,
    resumed_from INTEGER,
    plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS waves (
    rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started REAL,
    finished REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    allowed INTEGER,
    PRIMARY KEY (rollout_id, idx)
);
CREATE TABLE IF NOT EXISTS host_runs (
    rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
    host TEXT NOT NULL,
    wave INTEGER,
    status TEXT NOT NULL,
    step TEXT,
    started REAL,
    finished REAL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rollout_id, host)
);
CREATE INDEX IF NOT EXISTS rollouts_by_inventory ON rollouts(inventory, id);
"""


PRIVATE = 0o600  # the state holds hook output (host names, scheduler messages): owner only


def _make_private(path: Path) -> None:
    """Create path (empty) mode 0600 if missing, else set 0600, whatever the umask.

    An existing file is never opened: closing any descriptor of a file drops every POSIX
    lock this process holds on it, and SQLite's WAL locks on the database and its -shm
    are such locks. With them gone, another process's reader took itself for the last
    connection and truncated the -shm under our mapping: the rollout died of SIGBUS."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:  # a new file: this process holds no lock on it yet
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE)
        except FileExistsError:  # made meanwhile by another process
            st = os.lstat(path)
        else:
            os.fchmod(fd, PRIVATE)
            os.close(fd)
            return
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, "refusing a symlink for the rollout state", str(path))
    if stat.S_IMODE(st.st_mode) != PRIVATE:
        os.chmod(path, PRIVATE)


def default_state_path(inventory: Path) -> Path:
    return inventory.with_name(inventory.name + ".gpuprov-state.db")


def inventory_hash(inventory: Path) -> str:
    try:
        return hashlib.sha256(inventory.read_bytes()).hexdigest()
    except OSError:
        return ""


@dataclass(frozen=True)
class RolloutRecord:
    id: int
    inventory: str
    inventory_hash: str
    started: float
    finished: float | None
    status: str
    reason: str | None
    pid: int
    resumed_from: int | None
    plan: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "plan"} | {"plan": self.plan}


@dataclass(frozen=True)
class WaveRecord:
    index: int
    name: str
    status: str
    started: float | None
    finished: float | None
    failures: int
    allowed: int | None


@dataclass(frozen=True)
class HostRecord:
    host: str
    wave: int | None
    status: str
    step: str | None
    started: float | None
    finished: float | None
    error: str | None
    attempts: int


@dataclass(frozen=True)
class RolloutStatus:
    rollout: RolloutRecord
    waves: list[WaveRecord] = field(default_factory=list)
    hosts: list[HostRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout.to_dict(),
            "waves": [w.__dict__ for w in self.waves],
            "hosts": [h.__dict__ for h in self.hosts],
        }


HOLDER_WAIT_S = 5.0  # how long a refused locker waits for the holder's pid to appear


class RolloutLock:
    """An exclusive flock on `<db>.lock`, with the holder's pid and start time inside."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE)
        os.fchmod(fd, PRIVATE)  # whatever the umask, and for a file an older version made
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._wait_for_holder(fd)
            os.close(fd)
            raise LockedError(
                f"another rollout using {self.path.with_suffix('')} is running ({holder}); "
                "wait for it or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": stamp}).encode(), 0)
        self._fd = fd

    @staticmethod
    def _read_holder(fd: int) -> str | None:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"pid {data['pid']}, started {data['started']}"
        except (ValueError, KeyError, OSError):
            return None

    @classmethod
    def _wait_for_holder(cls, fd: int) -> str:
        # The holder writes its pid just after taking the lock (and a released lock file is
        # emptied), so an empty file means "being written": look again, briefly.
        deadline = time.monotonic() + HOLDER_WAIT_S
        while (holder := cls._read_holder(fd)) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return holder or "holder unknown"

    def holder(self) -> str | None:
        """Who holds the lock right now ("pid N, started T"), or None when nobody does."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._wait_for_holder(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            # Emptied before unlocking: a stale pid must never name the next holder.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RolloutLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


OPEN_WAIT_S = 30.0  # how long opening the state waits for another process switching it to WAL


def _set_wal(db: sqlite3.Connection) -> None:
    """`PRAGMA journal_mode=WAL`, retried while another process holds the database: the
    switch takes an exclusive lock and SQLite answers "database is locked" at once, without
    its busy timeout, when a second process opens a new state file at the same moment (two
    applies started together: the loser was told to move the state away instead of being
    named the holder of the rollout lock). Bounded by OPEN_WAIT_S."""
    deadline = time.monotonic() + OPEN_WAIT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class StateStore:
    """The rollout history of one inventory (or of whatever `--state` names)."""

    def __init__(self, path: Path, inventory: Path):
        self.path = Path(path)
        self.inventory = Path(inventory).resolve()
        self._write = threading.Lock()  # the work callable reports steps from many threads
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _make_private(self.path)
        self.db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self.db.row_factory = sqlite3.Row
        _set_wal(self.db)
        # WAL + NORMAL: a commit is in the WAL (OS page cache) when execute() returns, so a
        # killed process loses nothing; only a power cut may drop the last few transitions,
        # which at worst re-runs a host on resume (deploys are idempotent). FULL would fsync
        # every transition: 3.4 ms each here vs 0.04 ms, about 0.5 s per 20 changed hosts.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        for suffix in ("-wal", "-shm"):  # SQLite copies the database's mode; older files
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                _make_private(side)

    @classmethod
    def for_inventory(cls, inventory: Path, state: Path | None = None) -> StateStore:
        return cls(state or default_state_path(Path(inventory)), inventory)

    def close(self) -> None:
        self.db.close()

    def lock(self) -> RolloutLock:
        return RolloutLock(self.path.with_name(self.path.name + ".lock"))

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._write:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _exec(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._write:
            self.db.execute(sql, args)

    # ---- writes (each one committed before returning) ---------------------------------
    def create_rollout(self, plan: RolloutPlan, resumed_from: int | None = None) -> int:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO rollouts (inventory, inventory_hash, started, status, pid, resumed_from, plan)"
                " VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (
                    str(self.inventory),
                    inventory_hash(self.inventory),
                    now,
                    os.getpid(),
                    resumed_from,
                    json.dumps(plan.to_dict()),
                ),
            )
            assert cur.lastrowid is not None  # an INSERT sets it
            rid = cur.lastrowid
            for wave in plan.waves:
                db.execute(
                    "INSERT INTO waves (rollout_id, idx, name, status) VALUES (?, ?, ?, 'pending')",
                    (rid, wave.index, wave.name),
                )
                for host in wave.hosts:
                    db.execute(
                        "INSERT INTO host_runs (rollout_id, host, wave, status) VALUES (?, ?, ?, 'pending')",
                        (rid, host, wave.index),
                    )
            for host in plan.skipped:
                db.execute(
                    "INSERT INTO host_runs (rollout_id, host, wave, status, step) VALUES (?, ?, NULL, 'skipped', 'converged')",
                    (rid, host),
                )
        return rid

    def reopen(self, rollout_id: int) -> None:
        """Take over an interrupted/halted rollout for a resume: it runs again under our pid."""
        self._exec(
            "UPDATE rollouts SET status='running', finished=NULL, reason=NULL, pid=? WHERE id=?",
            (os.getpid(), rollout_id),
        )

    def set_rollout(self, rollout_id: int, status: str, reason: str | None = None) -> None:
        assert status in ROLLOUT_STATUSES, status
        finished = None if status == "running" else time.time()
        self._exec(
            "UPDATE rollouts SET status=?, reason=?, finished=? WHERE id=?",
            (status, reason, finished, rollout_id),
        )

    def set_wave(
        self,
        rollout_id: int,
        index: int,
        status: str,
        *,
        failures: int | None = None,
        allowed: int | None = None,
    ) -> None:
        assert status in WAVE_STATUSES, status
        now = time.time()
        if status == "running":
            sql = "UPDATE waves SET status=?, started=COALESCE(started, ?), finished=NULL WHERE rollout_id=? AND idx=?"
            args: tuple[Any, ...] = (status, now, rollout_id, index)
        else:
            sql = (
                "UPDATE waves SET status=?, finished=?, failures=COALESCE(?, failures), allowed=COALESCE(?, allowed)"
                " WHERE rollout_id=? AND idx=?"
            )
            args = (status, now, failures, allowed, rollout_id, index)
        self._exec(sql, args)

    def set_host(
        self,
        rollout_id: int,
        host: str,
        status: str,
        *,
        step: str | None = None,
        error: str | None = None,
    ) -> None:
        assert status in HOST_STATUSES, status
        now = time.time()
        if status == "draining":  # the first step of a (re)run
            sql = (
                "UPDATE host_runs SET status=?, step=?, started=?, finished=NULL, error=NULL,"
                " attempts=attempts+1 WHERE rollout_id=? AND host=?"
            )
            args: tuple[Any, ...] = (status, step or "drain", now, rollout_id, host)
        elif status in ("done", "failed", "skipped"):
            sql = (
                "UPDATE host_runs SET status=?, step=COALESCE(?, step), finished=?, error=? "
                "WHERE rollout_id=? AND host=?"
            )
            args = (status, step, now, error[-ERROR_EXCERPT:] if error else None, rollout_id, host)
        else:
            sql = "UPDATE host_runs SET status=?, step=COALESCE(?, step) WHERE rollout_id=? AND host=?"
            args = (status, step, rollout_id, host)
        self._exec(sql, args)

    def set_hosts(
        self, rollout_id: int, hosts: Sequence[str], status: str, *, step: str | None = None
    ) -> None:
        """One transition of many hosts (a wave entering a phase) in one transaction: a
        commit per host is thousands of WAL appends on a site-sized rollout. Failures keep
        set_host: each has its own error."""
        assert status in HOST_STATUSES and status not in ("failed", "skipped"), status
        if not hosts:
            return
        now = time.time()
        if status == "draining":
            sql = (
                "UPDATE host_runs SET status=?, step=?, started=?, finished=NULL, error=NULL,"
                " attempts=attempts+1 WHERE rollout_id=? AND host=?"
            )
            rows: list[tuple[Any, ...]] = [
                (status, step or "drain", now, rollout_id, h) for h in hosts
            ]
        elif status == "done":
            sql = (
                "UPDATE host_runs SET status=?, step=COALESCE(?, step), finished=?, error=NULL "
                "WHERE rollout_id=? AND host=?"
            )
            rows = [(status, step, now, rollout_id, h) for h in hosts]
        else:
            sql = "UPDATE host_runs SET status=?, step=COALESCE(?, step) WHERE rollout_id=? AND host=?"
            rows = [(status, step, rollout_id, h) for h in hosts]
        with self._tx() as db:
            db.executemany(sql, rows)

    def set_step(self, rollout_id: int, host: str, step: str) -> None:
        self._exec(
            "UPDATE host_runs SET step=? WHERE rollout_id=? AND host=?", (step, rollout_id, host)
        )

    # ---- reads ------------------------------------------------------------------------
    def _record(self, row: sqlite3.Row) -> RolloutRecord:
        return RolloutRecord(
            id=row["id"], inventory=row["inventory"], inventory_hash=row["inventory_hash"],
            started=row["started"], finished=row["finished"], status=row["status"], reason=row["reason"],
            pid=row["pid"], resumed_from=row["resumed_from"], plan=json.loads(row["plan"]),
        )  # fmt: skip

    def history(self, inventory: Path | None = None) -> list[RolloutRecord]:
        inv = str(Path(inventory).resolve() if inventory else self.inventory)
        rows = self.db.execute(
            "SELECT * FROM rollouts WHERE inventory=? ORDER BY id", (inv,)
        ).fetchall()
        return [self._record(r) for r in rows]

    def latest(self, inventory: Path | None = None) -> RolloutRecord | None:
        records = self.history(inventory)
        return records[-1] if records else None

    def inventory_changed(self, record: RolloutRecord) -> bool:
        """True when the inventory file differs from the one the rollout started with."""
        return record.inventory_hash != inventory_hash(self.inventory)

    def latest_resumable(self, inventory: Path | None = None) -> RolloutRecord | None:
        """The newest rollout of this inventory that did not complete, if it is the newest
        rollout at all (a resume never skips over a later rollout).

        A rollout still marked `running` is resumable only when nobody holds the lock:
        that is a process that was killed. Callers hold the lock when they ask.
        """
        last = self.latest(inventory)
        return last if last is not None and last.status in RESUMABLE else None

    def drained_hosts(self, inventory: Path | None = None) -> dict[str, str]:
        """{host: its last status} for every host a rollout of this inventory may have left
        drained: the last run that touched it (not skipped, not still pending) stopped
        after its drain and before a successful undrain. Such a host is never "converged":
        what the deploys find on it says nothing about the scheduler having it back."""
        inv = str(Path(inventory).resolve() if inventory else self.inventory)
        rows = self.db.execute(
            "SELECT h.host, h.status FROM host_runs h JOIN rollouts r ON r.id = h.rollout_id"
            " WHERE r.inventory=? AND h.status NOT IN ('skipped', 'pending')"
            " ORDER BY h.rollout_id",
            (inv,),
        )
        last = {r["host"]: r["status"] for r in rows}  # later rollouts overwrite earlier
        return {h: s for h, s in last.items() if s in MAYBE_DRAINED}

    def status(self, rollout_id: int) -> RolloutStatus | None:
        row = self.db.execute("SELECT * FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
        if row is None:
            return None
        waves = [
            WaveRecord(
                r["idx"],
                r["name"],
                r["status"],
                r["started"],
                r["finished"],
                r["failures"],
                r["allowed"],
            )
            for r in self.db.execute(
                "SELECT * FROM waves WHERE rollout_id=? ORDER BY idx", (rollout_id,)
            )
        ]
        hosts = [
            HostRecord(
                r["host"],
                r["wave"],
                r["status"],
                r["step"],
                r["started"],
                r["finished"],
                r["error"],
                r["attempts"],
            )
            for r in self.db.execute(
                "SELECT * FROM host_runs WHERE rollout_id=? ORDER BY COALESCE(wave, 1e9), host",
                (rollout_id,),
            )
        ]
        return RolloutStatus(self._record(row), waves, hosts)

    def host_statuses(self, rollout_id: int) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT host, status FROM host_runs WHERE rollout_id=?", (rollout_id,)
        )
        return {r["host"]: r["status"] for r in rows}

    def wave_statuses(self, rollout_id: int) -> dict[int, str]:
        rows = self.db.execute("SELECT idx, status FROM waves WHERE rollout_id=?", (rollout_id,))
        return {r["idx"]: r["status"] for r in rows}

    def load_plan(self, rollout_id: int) -> RolloutPlan:
        row = self.db.execute("SELECT plan FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
        if row is None:
            raise KeyError(rollout_id)
        return RolloutPlan.from_dict(json.loads(row["plan"]))
