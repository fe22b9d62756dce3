"""Run hooks the way a rollout does (16 at a time, LocalHookRunner) in this process and
print what happened as JSON; `--gevent`: monkey-patched first, as the CLI runs the engine.
test_hook_process.py runs it in a child process so the patch never reaches pytest."""

import sys

if "--gevent" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import asdict  # noqa: E402

from gpuprov.inventory.model import Host, SSHSettings  # noqa: E402
from gpuprov.rollout.hooks import LocalHookRunner  # noqa: E402

forks = 0


def count_fork() -> None:
    global forks
    forks += 1


# Every os.fork() of this process runs the at-fork handlers (gevent's Popen forks this
# way); a vfork spawn (the standard library's Popen, posix_spawn) does not.
os.register_at_fork(before=count_fork)


def host(i: int) -> Host:
    return Host(name=f"gpu{i:03d}", address=f"10.0.0.{i + 1}", role="gpu", group="hgx",
                ssh=SSHSettings(), stack=None, profile=None, domains={})  # fmt: skip


def alone() -> None:
    """One hook, the process's first child: no other child's SIGCHLD can make up for a
    lost one."""
    result = LocalHookRunner(timeout=5).run("true alone {host}", host(0))
    print(json.dumps(asdict(result)))


def main() -> None:
    if "--alone" in sys.argv:
        return alone()
    marker = sys.argv[1]
    # A rollout holds an SSH socket per host: the hooks' pipes get fds above 1023, which
    # select() refuses. Hold 1100 open, as a site-sized rollout does.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    assert held[-1] > 1023
    os.dup2(os.open(os.devnull, os.O_RDONLY), 77, inheritable=True)  # as a job system's fd
    runner, short = LocalHookRunner(timeout=20), LocalHookRunner(timeout=1)
    jobs = {f"drain{i}": (runner, "true drain {host}", i) for i in range(40)}
    jobs |= {
        "exit3": (runner, "echo out; echo err >&2; exit 3", 0),
        "big": (runner, "head -c 300000 /dev/zero | tr '\\0' x; echo; echo END", 0),
        # A grandchild that would act after the timeout, as a `kubectl uncordon` started
        # by a wrapper script would: the whole group must go.
        "timeout": (short, f"(sleep 2; touch {marker}) & sleep 30", 0),
        "missing": (runner, "/nonexistent/hook {host}", 0),
        "slow": (runner, "sleep 1", 0),
        "fds": (runner, "ls /proc/self/fd", 0),
    }
    ticks = 0
    stop = threading.Event()

    def heartbeat() -> None:  # runs only while no hook blocks the process (gevent's hub)
        nonlocal ticks
        while not stop.is_set():
            time.sleep(0.05)
            ticks += 1

    took: dict[str, float] = {}
    beat = threading.Thread(target=heartbeat)
    beat.start()

    def run(name: str):
        hook_runner, template, i = jobs[name]
        start = time.monotonic()
        result = hook_runner.run(template, host(i))
        took[name] = time.monotonic() - start
        return result

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = dict(zip(jobs, pool.map(run, jobs), strict=True))
    stop.set()
    beat.join()
    print(json.dumps({
        "forks": forks, "ticks": ticks, "took": took,
        "results": {name: asdict(r) for name, r in results.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
