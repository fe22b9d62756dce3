"""A download that loses its connection mid-body resumes with `Range: bytes=N-` and ends
with the right bytes. A small TCP proxy in front of the mirror cuts the first full GET of
the 12 MiB file after 11 MiB of response."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from pathlib import Path

from huggingface_hub import hf_hub_download

# huggingface_hub writes in 10 MiB chunks; cut after more than one so a resume has a start.
CUT_AFTER = 11 * 1024 * 1024


class CuttingProxy:
    def __init__(self, upstream_port: int, target: str):
        self.upstream_port = upstream_port
        self.target = target.encode()
        self.requests: list[bytes] = []
        self.cut_done = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            armed = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, armed), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, armed), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, armed: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                for head in re.findall(rb"(?:GET|HEAD) [^\r\n]*\r\n(?:[^\r\n]+\r\n)*", data):
                    self.requests.append(head)
                    if (
                        head.startswith(b"GET")
                        and self.target in head
                        and b"range:" not in head.lower()
                        and not self.cut_done.is_set()
                    ):
                        armed.set()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                s.close()

    def _down(self, upstream: socket.socket, client: socket.socket, armed: threading.Event) -> None:
        sent = 0
        try:
            while data := upstream.recv(65536):
                if armed.is_set() and not self.cut_done.is_set():
                    sent += len(data)
                    if sent >= CUT_AFTER:
                        client.sendall(data[: len(data) - (sent - CUT_AFTER)])
                        self.cut_done.set()
                        client.shutdown(socket.SHUT_RDWR)
                        break
                client.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                s.close()

    def close(self) -> None:
        self.closing = True
        self.listener.close()


def test_download_resumes_after_the_connection_drops(mirror, hf_cache):
    port = int(mirror.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, "extra.safetensors")
    try:
        path = hf_hub_download(
            "acme/tiny-bert",
            "extra.safetensors",
            endpoint=f"http://127.0.0.1:{proxy.port}",
            cache_dir=hf_cache,
            token=False,
        )
    finally:
        proxy.close()
    assert proxy.cut_done.is_set(), "the proxy never cut the download"
    want = (mirror.model_dir / "extra.safetensors").read_bytes()
    assert hashlib.sha256(Path(path).read_bytes()).digest() == hashlib.sha256(want).digest()
    ranges = [
        m.group(1)
        for head in proxy.requests
        if b"extra.safetensors" in head
        for m in [re.search(rb"(?i)range: bytes=(\d+)-\r\n", head)]
        if m
    ]
    assert ranges, b"\n---\n".join(proxy.requests).decode()
    # The retry asked for the rest only, from where the cut happened (or just before).
    assert ranges and 0 < int(ranges[0]) <= CUT_AFTER
