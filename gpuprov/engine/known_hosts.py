"""The cluster's own known_hosts file (beside the inventory): fetch, show, record keys.

Connections always check host keys strictly against this file; `gpuprov hosts trust`
is the one place a key gets in, after the operator saw its fingerprint. A key that
differs from the recorded one is never replaced silently.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys

from gpuprov.errors import LockedError
from gpuprov.inventory.model import Host


@dataclass(frozen=True)
class ScannedKey:
    host: str  # inventory name
    entry: str  # known_hosts host field: "10.0.1.3" or "[10.0.1.3]:2222"
    key_type: str | None = None
    key_base64: str | None = None
    fingerprint: str | None = None  # "SHA256:..."
    error: str | None = None
    status: str = "new"  # new | known | changed | error
    recorded_fingerprint: str | None = None  # the old key, when changed
    recorded_type: str | None = None  # its type (may differ from key_type)


def host_entry(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def fetch_key(host: Host, timeout: float | None = None) -> ScannedKey:
    """Read the host's key from the SSH handshake (no authentication happens)."""
    entry = host_entry(host.address, host.ssh.port)
    timeout = timeout or host.ssh.connect_timeout
    try:
        sock = socket.create_connection((host.address, host.ssh.port), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return ScannedKey(host.name, entry, error=f"unreachable ({reason})", status="error")
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        return ScannedKey(host.name, entry, error=f"SSH handshake failed ({exc})", status="error")
    finally:
        transport.close()
    return ScannedKey(
        host.name, entry, key.get_name(), key.get_base64(), fingerprint(key), status="new"
    )


def _load(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _entry_matches(line: str, entry: str) -> HostKeyEntry | None:
    parsed = HostKeyEntry.from_line(line) if line.strip() and not line.startswith("#") else None
    if parsed is None or parsed.key is None:
        return None
    for name in parsed.hostnames:
        if name == entry:
            return parsed
        if name.startswith("|1|") and HostKeys.hash_host(entry, name) == name:
            return parsed
    return None


def classify(scanned: ScannedKey, lines: list[str]) -> ScannedKey:
    """Compare a fetched key with what the file records for the same host entry.

    Any key the file does not record for a host it already has a key for is a change,
    whatever its type: a man in the middle offering ECDSA for a host recorded with
    ed25519 must not pass as "new"."""
    if scanned.error:
        return scanned
    recorded: paramiko.PKey | None = None
    for line in lines:
        parsed = _entry_matches(line, scanned.entry)
        if parsed is None:
            continue
        if (
            parsed.key.get_name() == scanned.key_type
            and parsed.key.get_base64() == scanned.key_base64
        ):
            return _replace(scanned, status="known")
        recorded = recorded or parsed.key
    if recorded is not None:
        return _replace(
            scanned,
            status="changed",
            recorded_fingerprint=fingerprint(recorded),
            recorded_type=recorded.get_name(),
        )
    return scanned


def _replace(s: ScannedKey, **changes: Any) -> ScannedKey:
    from dataclasses import replace

    return replace(s, **changes)


def scan(hosts: list[Host], known_hosts: Path) -> list[ScannedKey]:
    """Fetch every host's key in parallel and classify it against `known_hosts`."""
    lines = _load(known_hosts)
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(hosts))) as pool:
        fetched = list(pool.map(fetch_key, hosts))
    return [classify(s, lines) for s in fetched]


def record(known_hosts: Path, keys: list[ScannedKey], replace: bool = False) -> int:
    """Write new keys (and, with `replace`, changed ones) to the file atomically,
    keeping every other line as it was. Returns the number of keys written.

    Several `gpuprov hosts trust` may run at once (one per rack): the file is re-read
    and each key re-classified under an exclusive lock, so no update is lost, and the
    new file is fsynced before it replaces the old one (and the folder after), so a
    power cut leaves the old file or the new one, never an empty one."""
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    with _locked(known_hosts):
        lines = _load(known_hosts)
        # What another process recorded since the scan counts: classify again.
        current = [
            classify(_replace(k, status="new"), lines) if k.status in ("new", "changed") else k
            for k in keys
        ]
        to_write = [k for k in current if k.status == "new" or (replace and k.status == "changed")]
        if not to_write:
            return 0
        if replace:
            # A reinstalled host has new keys of every type: drop all its old ones.
            changed = {k.entry for k in to_write if k.status == "changed"}
            lines = [line for line in lines if not any(_entry_matches(line, e) for e in changed)]
        lines += [f"{k.entry} {k.key_type} {k.key_base64}" for k in to_write]
        _write_atomically(known_hosts, "\n".join(lines) + "\n")
    return len(to_write)


LOCK_TIMEOUT = 60.0  # seconds; another `hosts trust` holds it for milliseconds


@contextmanager
def _locked(known_hosts: Path) -> Iterator[None]:
    lock_path = known_hosts.parent / f".{known_hosts.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockedError(
                        f"{lock_path} is locked by another gpuprov for over "
                        f"{LOCK_TIMEOUT:.0f}s; wait for it to finish and rerun"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
