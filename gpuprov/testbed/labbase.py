"""TEST BED code: what light-host labs and VM labs share.

Both are context managers over start()/close(), hold a network slot (netalloc) whose
bridge carries the lab's private network, serve directories over HTTP on the bridge
address, reach their hosts with strict host-key checking, and write a gpuprov inventory.
"""

from __future__ import annotations

from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from gpuprov.testbed import netalloc
from gpuprov.testbed.inventory import write_lab_inventory


class NetworkLab:
    prefix: str
    slot: netalloc.Slot | None
    key_path: Path
    known_hosts_path: Path
    _servers: list[ThreadingHTTPServer]
    # ssh client timeouts: (ConnectTimeout, ServerAliveInterval, ServerAliveCountMax)
    ssh_timeouts: tuple[int, int, int] = (5, 1, 3)

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def inventory_hosts(self) -> list[tuple[str, str]]:
        """(name, address) of each host, in order, for write_inventory."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bridge(self) -> str:
        assert self.slot
        return f"{self.prefix}{self.slot.number}br"

    @property
    def bridge_address(self) -> str:
        assert self.slot
        return self.slot.ip(1)

    def serve_http(self, directory: Path | str) -> str:
        """Serve `directory` over HTTP on the bridge address; stopped at teardown."""
        server = netalloc.serve_directory(self.bridge_address, directory)
        self._servers.append(server)
        return f"http://{self.bridge_address}:{server.server_address[1]}/"

    def ssh_options(self) -> list[str]:
        """OpenSSH client options for strict host-key checking with the lab key."""
        connect, interval, count = self.ssh_timeouts
        return [
            "-i", str(self.key_path),
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts_path}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={connect}",
            "-o", f"ServerAliveInterval={interval}",
            "-o", f"ServerAliveCountMax={count}",
        ]  # fmt: skip

    def write_inventory(self, path: Path | str, *, mirror: bool = False, **stack: Any) -> Path:
        """A gpuprov inventory for the lab's hosts, with the lab key and known_hosts."""
        return write_lab_inventory(
            Path(path),
            hosts=self.inventory_hosts(),
            key=self.key_path,
            known_hosts=self.known_hosts_path,
            mirror=mirror,
            **stack,
        )
