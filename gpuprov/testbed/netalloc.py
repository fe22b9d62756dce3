"""TEST BED: machine-wide allocation of lab slots (a /24 and interface names per lab).

Namespaces, bridges and subnets are global to the machine, and several agents and test
processes start labs at once, so each lab takes a slot N (1..254) under one fcntl lock in
/run: subnet 10.213.N.0/24, names `<prefix><N>...`. A slot file records the owner PID and
every resource the lab creates, so a slot left by a killed process is cleaned and reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATE_DIR = Path(os.environ.get("GPUPROV_TESTBED_STATE", "/run/gpuprov-testbed"))
SUBNET_BASE = "10.213"


@dataclass
class Slot:
    number: int
    owner: int  # PID of the process holding the slot
    kind: str  # "light" or "vm"
    workdir: str = ""
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    @property
    def subnet(self) -> str:
        return f"{SUBNET_BASE}.{self.number}.0/24"

    def ip(self, last: int) -> str:
        return f"{SUBNET_BASE}.{self.number}.{last}"

    @property
    def path(self) -> Path:
        return STATE_DIR / f"slot-{self.number}.json"

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, self.path)

    def release(self) -> None:
        with _locked(), contextlib.suppress(FileNotFoundError):
            current = json.loads(self.path.read_text())
            if current.get("owner") == self.owner:
                self.path.unlink()


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "alloc.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _subnets_in_use() -> set[int]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    used = set()
    for word in out.split():
        if word.startswith(SUBNET_BASE + "."):
            with contextlib.suppress(ValueError, IndexError):
                used.add(int(word.split(".")[2]))
    return used


def allocate(kind: str, number: int | None = None) -> Slot:
    """Take a free slot (or exactly `number`), cleaning slots whose owner has died."""
    with _locked():
        in_use = _subnets_in_use()
        choices = [number] if number is not None else range(1, 255)
        for n in choices:
            path = STATE_DIR / f"slot-{n}.json"
            if path.exists():
                try:
                    old = Slot(**json.loads(path.read_text()))
                except (ValueError, TypeError):
                    old = None
                if old is not None and _alive(old.owner):
                    continue
                if old is not None:
                    cleanup_stale(old)
                path.unlink(missing_ok=True)
                in_use = _subnets_in_use()
            if n in in_use:
                continue
            slot = Slot(number=n, owner=os.getpid(), kind=kind)
            slot.save()
            return slot
    if number is not None:
        raise RuntimeError(f"test-bed slot {number} ({SUBNET_BASE}.{number}.0/24) is in use")
    raise RuntimeError("no free test-bed slot (all of 10.213.1-254.0/24 in use)")


def _is_ours(pid: int, names: tuple[str, ...]) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return any(n in cmd for n in names)


def cleanup_stale(slot: Slot) -> None:
    """Remove what a dead lab left: processes, mounts, namespaces, links, its directory."""
    for pid in slot.pids:
        if _is_ours(pid, ("sshd", "qemu-system", "unshare")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for mount in reversed(slot.mounts):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    # Links first: a veth left in a deleted namespace goes away only later, asynchronously.
    for link in reversed(slot.links):
        subprocess.run(["ip", "link", "del", link], capture_output=True)
    for ns in slot.netns:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if slot.workdir:
        shutil.rmtree(slot.workdir, ignore_errors=True)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a setup command; a failure raises with its stderr (test-bed setup errors)."""
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        pass


def serve_directory(address: str, directory: Path | str) -> ThreadingHTTPServer:
    """An HTTP server for `directory` on address:<free port>, in a daemon thread.
    The caller stops it with shutdown() + server_close()."""
    server = ThreadingHTTPServer((address, 0), partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
