"""Debian's docker-registry (the Distribution registry) run for a test on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def docker_registry(config: Path, port: int, listen_timeout: float = 30) -> Iterator[None]:
    """`docker-registry serve CONFIG` until the block ends; returns once 127.0.0.1:PORT
    accepts. Its output goes to registry.log beside the config (shown if it dies)."""
    log_path = config.parent / "registry.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + listen_timeout
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "docker-registry did not listen"
                time.sleep(0.1)
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=10)
