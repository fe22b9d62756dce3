"""The mirror host's apt repositories as static files: `python -m gpuprov.mirror.aptserve`.

Python's `http.server` (what the apt unit ran before) waits forever for a request that
never comes and starts a thread for every connection, so one client could hold any number
of connections for any time (issue #13, item 8). This is the same server with bounds:

- a socket timeout (`--idle-timeout`) on every read and write: an idle connection, a
  request head sent byte by byte, and a client that stops reading are all closed;
- at most `--max-client-connections` per client address and `--max-connections` in all,
  beyond which a connection gets `503` and is closed without a thread;
- GET/HEAD of regular files below `--directory` only: no listings, no symlink out of it.

Only the standard library: apt verifies every byte against the signed InRelease, so this
server is trusted for availability, not integrity, and needs nothing installed.
"""

from __future__ import annotations

import argparse
import http.server
import os
import socket
import sys
import threading
from collections import Counter
from functools import partial

from gpuprov.errors import ExitCode

REFUSAL = (
    b"HTTP/1.0 503 Service Unavailable\r\n"
    b"Connection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n"
)


class Handler(http.server.SimpleHTTPRequestHandler):
    server: Server

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # type: ignore[misc]  # StreamRequestHandler applies it
        super().setup()

    def list_directory(self, path):  # apt never needs a listing
        self.send_error(404, "Not found")
        return None

    def send_head(self):
        path = self.translate_path(self.path)
        real = os.path.realpath(path)
        if os.path.isdir(path):
            return self.list_directory(path)
        if not (real == self.server.root or real.startswith(self.server.root + os.sep)):
            self.send_error(404, "Not found")  # a symlink out of the served tree
            return None
        return super().send_head()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        root: str,
        *,
        idle_timeout: float,
        max_per_client: int,
        max_total: int,
    ):
        self.root = os.path.realpath(root)
        self.idle_timeout = idle_timeout
        self.max_per_client, self.max_total = max_per_client, max_total
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, partial(Handler, directory=self.root))

    def process_request(self, request, client_address) -> None:
        host = client_address[0]
        with self._lock:
            full = (
                self.counts[host] >= self.max_per_client
                or sum(self.counts.values()) >= self.max_total
            )
            if not full:
                self.counts[host] += 1
        if full:
            try:
                request.settimeout(1.0)
                request.sendall(REFUSAL)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        # A client that stopped reading hits the socket timeout mid-response: one line in
        # the journal, not a traceback.
        exc = sys.exc_info()[1]
        print(f"{client_address[0]}: connection dropped: {exc!r}", file=sys.stderr, flush=True)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self.counts[client_address[0]] -= 1
                if self.counts[client_address[0]] <= 0:
                    del self.counts[client_address[0]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuprov.mirror.aptserve")
    parser.add_argument("--bind", required=True, help="address to listen on (no default)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--directory", required=True)
    parser.add_argument("--idle-timeout", type=float, default=15.0)
    parser.add_argument("--max-client-connections", type=int, default=64)
    parser.add_argument("--max-connections", type=int, default=1024)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.directory):
        print(f"{args.directory}: error: not a directory", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        server = Server(
            (args.bind, args.port),
            args.directory,
            idle_timeout=args.idle_timeout,
            max_per_client=args.max_client_connections,
            max_total=args.max_connections,
        )
    except OSError as exc:
        print(f"--bind: error: cannot listen on {args.bind}:{args.port}: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    with server:
        server.serve_forever()
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
