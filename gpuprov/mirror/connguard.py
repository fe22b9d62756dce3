"""A per-client connection cap and a stall timeout for the mirror's listening socket.

aiohttp bounds idle connections and slow request heads with its keep-alive timer (armed
when a connection opens and after each response; see server.start), but has no limit on
how many connections one address may hold, and a client that stops reading mid-download
holds its connection forever (the body goes out with sendfile, no timer sees it).
`GuardedSite` listens like `web.TCPSite` and wraps each connection's protocol in
`_Guarded`, which turns away a client's connection beyond the cap with a 503 before
aiohttp sees a byte of it, and sets TCP_USER_TIMEOUT on the socket: the kernel drops the
connection when sent data stays unacknowledged (a zero receive window included) that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import Counter
from collections.abc import Callable

from aiohttp import web

REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Connection: close\r\n"
    b"Content-Type: application/json\r\n"
    b"X-Error-Code: TooManyConnections\r\n"
    b"Retry-After: 5\r\n"
    b"Content-Length: 48\r\n"
    b"\r\n"
    b'{"error": "too many connections from this host"}'
)


class _Guarded(asyncio.Protocol):
    """Forwards every protocol callback to aiohttp's handler, once the client is within
    its cap; counts the connection until it is lost."""

    def __init__(self, inner: asyncio.Protocol, counts: Counter, cap: int, stall_ms: int):
        self._inner, self._counts, self._cap, self._stall_ms = inner, counts, cap, stall_ms
        self._peer: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        if self._counts[host] >= self._cap:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(REFUSAL)
            transport.close()
            return
        self._peer = host
        self._counts[host] += 1
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, self._stall_ms)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._peer is None:
            return
        self._counts[self._peer] -= 1
        if self._counts[self._peer] <= 0:
            del self._counts[self._peer]
        self._peer = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._peer is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._peer is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """`web.TCPSite` with a cap on simultaneous connections per client address."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_per_client: int,
        stall_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
    ):
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host, self._port, self._cap = host, port, max_per_client
        self._stall_ms = max(1, int(stall_timeout * 1000))
        self.counts: Counter[str] = Counter()  # client address -> open connections

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = lambda: _Guarded(  # noqa: E731
            server(), self.counts, self._cap, self._stall_ms
        )
        self._server = await asyncio.get_running_loop().create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
        )
