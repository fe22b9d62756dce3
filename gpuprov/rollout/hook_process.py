"""Run one hook process in its own session, bounded in time and output, without forking
the control process.

Why not `subprocess.Popen` as it comes: the CLI runs under gevent's monkey patch, whose
`Popen` is a real `fork()` of the whole gpuprov process followed by Python code in the
child. A fork copies the page tables of every page the process maps and marks them all
copy-on-write, so the parent then takes a page fault on each page it writes next; the
cost grows with the process, which grows with the hosts it holds. A staged rollout runs
two hooks per host: per-hook cost growing with the host count made the rollout's
control-node CPU grow with the square of it (docs/scale.md). So under gevent the hook
is started with `posix_spawn` (vfork: no page tables copied, no at-fork handlers) and
only the waiting is done the gevent way: the pipes through gevent's `poll`, the exit
through a libev child watcher, with libev's SIGCHLD handler installed before the spawn
and the watcher started before anything yields, so the exit is never missed.

Without gevent (the engine's tests, any caller that never patched) the standard
library's `Popen` is used: it already spawns with vfork.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time

KILL_GRACE = 5.0  # seconds to collect output once a timed-out hook's group is killed
OUTPUT_LIMIT = 64 * 1024  # bytes kept of each stream (the tail): hooks can be chatty

Outcome = tuple[int | None, str]  # (exit code, or None on timeout; stdout + stderr)


def run_in_own_group(argv: list[str], timeout: float) -> Outcome:
    """(exit code or None on timeout, stdout+stderr) of argv run in its own session.

    Own session: a Ctrl-C on the terminal must not kill a half-done `kubectl drain`; the
    runner stops after the hooks in flight finish. On timeout the whole process group is
    killed, not only /bin/sh: a hook's children (a `kubectl` the shell started, anything
    they forked) would otherwise go on draining or undraining after we reported failure,
    and would hold the output pipes open, so we could not even return.
    """
    if gevent_patched():
        return _run_gevent(argv, timeout)
    return _run_plain(argv, timeout)


def gevent_patched() -> bool:
    """True when gevent's monkey patch replaced `subprocess` (the CLI's engine commands)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("subprocess"))


def _spawn(argv: list[str]) -> tuple[int, int, int]:
    """(pid, stdout read end, stderr read end) of argv started with posix_spawn: glibc
    starts it with clone(CLONE_VM | CLONE_VFORK), so nothing of this process is copied.
    (gevent's patch leaves the standard library's Popen unusable: it takes away
    `_fork_exec`.) What Popen would do for the child is done here: stdin from /dev/null,
    a new session, SIGPIPE and SIGXFSZ back to their defaults (Python ignores them), no
    signal blocked, and every other fd closed: Python opens its own close-on-exec (PEP
    446), the pipes included; what this process inherited open is closed explicitly."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawnp(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
                *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()),
            ],
            setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            setsigmask=(),
        )
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        # Only the child writes: end of file reaches us when it and its children exit.
        os.close(out_w)
        os.close(err_w)
    return pid, out_r, err_r


def _inheritable_fds() -> list[int]:
    """This process's open fds above 2 without close-on-exec (inherited from whoever
    started gpuprov: a job system's pipe must not stay open in a `kubectl drain`)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                    fds.append(fd)
            except OSError:  # the listing's own fd, closed by now
                continue
    return fds


def _run_plain(argv: list[str], timeout: float) -> Outcome:
    # The standard library's Popen starts the child with vfork() already (no preexec_fn).
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        try:
            out, err = proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            # Something left the group (setsid) and holds our pipes: stop reading.
            proc.kill()
            proc.wait()
            out, err = b"", b"(output lost: a process outside the hook's group held it)"
        return None, _text(out[-OUTPUT_LIMIT:], err[-OUTPUT_LIMIT:])
    return proc.returncode, _text(out[-OUTPUT_LIMIT:], err[-OUTPUT_LIMIT:])


def _run_gevent(argv: list[str], timeout: float) -> Outcome:
    from gevent import get_hub
    from gevent.event import Event

    loop = get_hub().loop
    # libev reaps children (waitpid(-1)) when SIGCHLD arrives, and hands each status to
    # the watcher of its pid: its handler must be in place before the child can exit (a
    # SIGCHLD at the default disposition is discarded, and the hook stays a zombie that
    # nobody reports), and the watcher must exist before anything yields.
    loop.install_sigchld()
    pid, out_r, err_r = _spawn(argv)
    exited = Event()
    watcher = loop.child(pid, False)
    watcher.start(exited.set)
    pipes = _Pipes(out_r, err_r)
    lost = False
    try:
        timed_out = not pipes.read_until(time.monotonic() + timeout)
        if timed_out:
            _kill_group(pid)
            lost = not pipes.read_until(time.monotonic() + KILL_GRACE)
        # Both pipes are closed (or given up on): the hook has exited or is about to. One
        # that closed its output and went on running is waited for up to its timeout.
        if not exited.wait(KILL_GRACE if timed_out else max(timeout, 0.0)):
            timed_out = True
            _kill_group(pid)
            if not exited.wait(KILL_GRACE):
                # It left its group (setsid) and outlived the group's SIGKILL.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                exited.wait(KILL_GRACE)
        status = watcher.rstatus if exited.is_set() else _reap(pid)
    finally:
        watcher.stop()
        watcher.close()
        os.close(out_r)
        os.close(err_r)
    if lost:
        return None, "(output lost: a process outside the hook's group held it)"
    if status is None:
        return None, _text(*pipes.tails) + f"\n(no exit status reported for process {pid})"
    return (None if timed_out else os.waitstatus_to_exitcode(status)), _text(*pipes.tails)


def _reap(pid: int) -> int | None:
    """The wait status of `pid` if it has exited and libev did not report it; never
    blocks (every wait is bounded)."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped by someone else: its status is gone
        return None
    return status if got else None


class _Pipes:
    """A hook's stdout and stderr, read cooperatively (gevent's poll: the other
    greenlets, SSH sessions and other hooks, run meanwhile; not select, which refuses an
    fd above 1023, and a rollout holds an SSH socket per host); each keeps its last
    OUTPUT_LIMIT bytes."""

    def __init__(self, *fds: int):
        self.fds = fds
        self.open = list(fds)
        self.bufs = {fd: bytearray() for fd in fds}

    def read_until(self, deadline: float) -> bool:
        """True when every pipe reached end of file, False when `deadline` came first."""
        import select as stdlib_select

        from gevent.select import poll

        waiting = poll()
        for fd in self.open:
            waiting.register(fd, stdlib_select.POLLIN)
        while self.open:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for fd, _event in waiting.poll(left * 1000):
                data = os.read(fd, 65536)  # readable or hung up: returns at once
                if not data:
                    self.open.remove(fd)
                    waiting.unregister(fd)
                    continue
                buf = self.bufs[fd]
                buf += data
                del buf[:-OUTPUT_LIMIT]
        return True

    @property
    def tails(self) -> tuple[bytes, bytes]:
        out, err = (bytes(self.bufs[fd]) for fd in self.fds)
        return out, err


def _text(out: bytes, err: bytes) -> str:
    return out.decode(errors="replace") + err.decode(errors="replace")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(pgid, signal.SIGKILL)
