"""Connection limits of the mirror (issue #13, item 8): idle connections and slowly sent
request heads are closed after the idle timeout, one client address holds at most
`max_client_connections`, and a download slower than the idle timeout is not cut. Raw
sockets against a real server on loopback."""

from __future__ import annotations

import hashlib
import http.client
import socket
import time

import pytest

from gpuprov.mirror.server import ServerConfig

from .conftest import ThreadedServer

IDLE = 1.0
CAP = 3
STALL = 3.0


@pytest.fixture
def limited(mirror_store):
    server = ThreadedServer(
        ServerConfig(
            mirror_store.store,
            port=0,
            idle_timeout=IDLE,
            max_client_connections=CAP,
            stall_timeout=STALL,
        )
    )
    try:
        yield server
    finally:
        server.stop()


def connect(server: ThreadedServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.running.port), timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (EOF or reset), None if it did not."""
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


def test_idle_connection_is_closed(limited):
    with connect(limited) as sock:
        took = closed_within(sock, IDLE + 5)
    assert took is not None and took < IDLE + 3, took


def test_slowly_sent_request_head_is_closed(limited):
    with connect(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < IDLE + 5:
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # bytes keep coming, the head never ends
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_within(sock, 0.2) is not None:
                closed = True
                break
        assert closed and time.monotonic() - started < IDLE + 3


def test_keep_alive_connection_is_closed_after_idle_timeout(limited):
    conn = http.client.HTTPConnection("127.0.0.1", limited.running.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b'{"status": "ok"}'
        took = closed_within(conn.sock, IDLE + 5)
    finally:
        conn.close()
    assert took is not None and took < IDLE + 3, took


def test_connections_beyond_the_cap_get_503_until_one_closes(limited):
    held = [connect(limited) for _ in range(CAP)]
    try:
        with connect(limited) as extra:
            extra.settimeout(5)
            reply = extra.recv(4096)
        assert reply.startswith(b"HTTP/1.1 503 ") and b"X-Error-Code: TooManyConnections" in reply
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the server sees the close a moment later
            conn = http.client.HTTPConnection("127.0.0.1", limited.running.port, timeout=5)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except (ConnectionError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            assert time.monotonic() < deadline, "no connection accepted after one closed"
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()


def test_download_slower_than_the_idle_timeout_completes(limited, mirror_store):
    data = (mirror_store.model_dir / "extra.safetensors").read_bytes()  # 12 MiB
    with connect(limited) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(
            b"GET /acme/tiny-bert/resolve/main/extra.safetensors HTTP/1.1\r\n"
            b"Host: x\r\nConnection: close\r\n\r\n"
        )
        started, got = time.monotonic(), bytearray()
        while chunk := sock.recv(256 * 1024):
            got += chunk
            if time.monotonic() - started < IDLE * 2.5:
                time.sleep(0.05)  # slow, for longer than the idle timeout, never stalled
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and time.monotonic() - started > IDLE * 2
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_client_that_stops_reading_is_dropped(limited, mirror_store):
    size = (mirror_store.model_dir / "extra.safetensors").stat().st_size
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", limited.running.port))
        sock.sendall(
            b"GET /acme/tiny-bert/resolve/main/extra.safetensors HTTP/1.1\r\n"
            b"Host: x\r\nConnection: close\r\n\r\n"
        )
        time.sleep(STALL + 4)  # reads nothing: the window closes, the server's data waits
        sock.settimeout(10)
        got = 0
        try:
            while chunk := sock.recv(1024 * 1024):
                got += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    assert 0 < got < size


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("idle_timeout", 0, "--idle-timeout"),
        ("stall_timeout", -1, "--stall-timeout"),
        ("max_client_connections", 0, "--max-client-connections"),
    ],
)
def test_limits_are_validated(mirror_store, field, value, flag):
    from gpuprov.errors import InputError

    with pytest.raises(InputError, match=flag):
        ServerConfig(mirror_store.store, **{field: value}).validate()
