"""The apt repositories' static server (issue #13, item 8 for the apt service): the real
`python -m gpuprov.mirror.aptserve` on loopback, against raw sockets. The same checks
against `python3 -m http.server`, which the apt unit ran before, fail: it keeps idle and
slow connections open and starts a thread for every connection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

IDLE = 1.0
CAP = 3
BIG = 64 * 1024 * 1024  # more than loopback socket buffers hold


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "apt"
    (root / "gpuprov" / "dists" / "gpuprov").mkdir(parents=True)
    (root / "gpuprov" / "dists" / "gpuprov" / "InRelease").write_text("signed index\n")
    (tmp_path / "secret").write_text("not for clients\n")
    os.symlink(tmp_path / "secret", root / "gpuprov" / "leak")
    return root


def start_server(repo: Path, idle: float):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpuprov.mirror.aptserve",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--directory",
            str(repo),
            "--idle-timeout",
            str(idle),
            "--max-client-connections",
            str(CAP),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "aptserve did not start"
            time.sleep(0.1)
    try:
        yield url, port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def served(repo):
    yield from start_server(repo, IDLE)


@pytest.fixture
def served_patient(repo):
    """A long idle timeout: connections a test holds open stay counted however slow the
    machine is (with IDLE, a loaded box let the server time them out, freeing a slot)."""
    yield from start_server(repo, 120.0)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_serves_files_but_no_listing_and_no_link_out_of_the_tree(served):
    url, _ = served
    assert get(f"{url}/gpuprov/dists/gpuprov/InRelease") == (200, b"signed index\n")
    assert get(f"{url}/gpuprov/dists/")[0] == 404
    assert get(f"{url}/gpuprov/leak")[0] == 404
    assert get(f"{url}/gpuprov/../../secret")[0] == 404


def test_idle_connection_and_slow_head_are_closed(served):
    _, port = served
    with socket.create_connection(("127.0.0.1", port)) as idle:
        took = closed_within(idle, IDLE + 5)
    assert took is not None and took < IDLE + 3, took
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"GET /gpuprov/dists/gpuprov/InRelease HTTP/1.1\r\n")
        time.sleep(IDLE / 2)
        slow.sendall(b"Host: x\r\n")  # each byte comes within the timeout, the head never ends
        took = closed_within(slow, IDLE + 5)
    assert took is not None and took < IDLE + 3, took


def test_connections_beyond_the_cap_get_503(served_patient):
    url, port = served_patient
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(CAP)]
    try:
        # No wait needed: the server accepts in the kernel's queue order, so it counts the
        # held connections before it accepts this one.
        with socket.create_connection(("127.0.0.1", port)) as extra:
            extra.settimeout(30)
            assert extra.recv(4096).startswith(b"HTTP/1.0 503 ")
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 30
    while get(f"{url}/gpuprov/dists/gpuprov/InRelease")[0] != 200:
        assert time.monotonic() < deadline, "no connection accepted after the others closed"
        time.sleep(0.1)


def test_refuses_a_missing_directory(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gpuprov.mirror.aptserve", "--bind", "127.0.0.1"]
        + ["--port", "0", "--directory", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "not a directory" in proc.stderr


def test_client_that_stops_reading_is_cut_off(served, repo):
    _, port = served
    (repo / "gpuprov" / "pool").mkdir()
    (repo / "gpuprov" / "pool" / "big.deb").write_bytes(bytes(BIG))
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /gpuprov/pool/big.deb HTTP/1.0\r\n\r\n")
        time.sleep(IDLE + 2)  # not reading: the server's send times out
        sock.settimeout(10)
        got = 0
        try:
            while chunk := sock.recv(1024 * 1024):
                got += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    assert 0 < got < BIG
