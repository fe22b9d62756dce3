"""Open files: gpuprov holds one SSH socket per host, every host of a State at once.

Linux's default soft limit (`ulimit -n`, often 1024) would stop a site-sized run with
EMFILE halfway through connecting, so the CLI raises the soft limit to the hard limit at
start (an unprivileged process may), and a State that still cannot hold its hosts' sockets
is refused before the first connection, with the numbers and the fix.
"""

from __future__ import annotations

import resource

from gpuprov.errors import InputError

# Beyond one socket per host: Python, the state database and its WAL, hooks' pipes (16 at
# a time), log files, the gate's subprocesses.
RESERVE = 128
# The kernel's default fs.nr_open: the most a soft limit may be when the hard one is
# "unlimited" (setting RLIM_INFINITY itself fails).
NR_OPEN_DEFAULT = 1 << 20


def raise_soft_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NR_OPEN_DEFAULT if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # a container's nr_open below the hard limit: keep what we have
    return soft


def needed(hosts: int) -> int:
    return hosts + RESERVE


def check(hosts: int) -> None:
    """Refuse a State of `hosts` hosts that this process cannot open sockets for."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed(hosts):
        return
    raise InputError(
        f"{hosts} hosts need about {needed(hosts)} open files (one SSH connection each), "
        f"but this process may open {soft} (ulimit -n; hard limit {hard}): raise the hard "
        "limit (LimitNOFILE= in a systemd unit, nofile in /etc/security/limits.conf) or "
        "select fewer hosts with --limit"
    )
