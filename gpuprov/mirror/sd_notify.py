"""Tell systemd the model server is ready (the sd_notify protocol, `Type=notify`).

With `Type=notify` a `systemctl start/restart` returns only once the server listens, so
`gpuprov apply` on the mirror host finishes with the model registry answering, and a
`gpuprov verify` right after it does not race the server's start-up (the Python server
needs seconds to import on a small mirror VM; nginx and docker-registry listen at once).

The protocol is one datagram `READY=1` to the AF_UNIX socket systemd names in
$NOTIFY_SOCKET (a path, or `@name` for the abstract namespace). Ten lines do not earn a
dependency (python-systemd is a C extension this package does not otherwise need).
"""

from __future__ import annotations

import os
import socket

NOTIFY_ENV = "NOTIFY_SOCKET"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, NUL included


def notify_ready(environ: dict[str, str] | None = None) -> bool:
    """Send READY=1 when run under systemd with a notify socket; True when sent. Outside
    systemd (tests, a shell) there is no socket and nothing happens."""
    env = os.environ if environ is None else environ
    where = env.get(NOTIFY_ENV, "")
    if not where or len(where) > MAX_SOCKET_PATH or where[0] not in "/@":
        return False
    address = "\0" + where[1:] if where[0] == "@" else where
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        try:
            sock.sendto(b"READY=1", address)
        except OSError:
            return False  # systemd gone: nothing to tell, serving goes on
    return True
