"""The sd_notify datagram, sent to real AF_UNIX sockets (a path and an abstract name)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from gpuprov.mirror.sd_notify import notify_ready


def test_ready_reaches_a_path_socket(tmp_path: Path) -> None:
    where = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(where))
        assert notify_ready({"NOTIFY_SOCKET": str(where)}) is True
        assert sock.recv(64) == b"READY=1"


def test_ready_reaches_an_abstract_socket() -> None:
    name = f"gpuprov-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert notify_ready({"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(64) == b"READY=1"


def test_outside_systemd_or_with_a_bad_value_nothing_is_sent(tmp_path: Path) -> None:
    assert notify_ready({}) is False
    assert notify_ready({"NOTIFY_SOCKET": "relative/path"}) is False
    assert notify_ready({"NOTIFY_SOCKET": "/" + "x" * 200}) is False
    assert notify_ready({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}) is False
