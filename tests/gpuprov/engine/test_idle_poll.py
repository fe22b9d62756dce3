"""An idle SSH connection wakes once a second, not ten times (paramiko's default): each
wake-up costs the control node CPU for every connection it holds (docs/scale.md)."""

from __future__ import annotations

import socket
from pathlib import Path

import paramiko
from clusters import make_cluster

from gpuprov.engine.connect import IDLE_POLL_S, build_state


def test_transports_of_a_built_state_poll_once_a_second(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, [("n1", "127.0.0.1", 22)], tmp_path / "key")
    build_state(cluster, list(cluster.hosts.values()))
    ours, theirs = socket.socketpair()
    try:
        # A real Transport over a real socket: the timeout its reader waits with.
        transport = paramiko.Transport(ours)
        assert ours.gettimeout() == IDLE_POLL_S == 1.0
        transport.close()
    finally:
        ours.close()
        theirs.close()
