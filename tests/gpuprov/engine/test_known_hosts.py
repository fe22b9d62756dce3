"""known_hosts bookkeeping on real paramiko keys (no network)."""

from __future__ import annotations

import os

import paramiko

from gpuprov.engine.known_hosts import ScannedKey, classify, fingerprint, host_entry, record


def scanned(key: paramiko.PKey, entry: str = "[10.0.0.1]:2222") -> ScannedKey:
    return ScannedKey("gpu001", entry, key.get_name(), key.get_base64(), fingerprint(key))


def test_entry_format():
    assert host_entry("10.0.0.1", 22) == "10.0.0.1"
    assert host_entry("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_new_known_changed_and_hashed(tmp_path):
    a, b = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    path = tmp_path / "known_hosts"
    assert classify(scanned(a), []).status == "new"
    assert record(path, [scanned(a)]) == 1
    lines = path.read_text().splitlines()
    assert classify(scanned(a), lines).status == "known"
    changed = classify(scanned(b), lines)
    assert changed.status == "changed" and changed.recorded_fingerprint == fingerprint(a)
    # hashed entries (HashKnownHosts yes) are understood too
    hashed = paramiko.HostKeys.hash_host("[10.0.0.1]:2222")
    assert classify(scanned(a), [f"{hashed} {a.get_name()} {a.get_base64()}"]).status == "known"


def test_record_keeps_other_lines_and_replaces_only_when_asked(tmp_path):
    a, b = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    other = paramiko.ECDSAKey.generate()
    path = tmp_path / "known_hosts"
    path.write_text(f"# site keys\n10.9.9.9 {other.get_name()} {other.get_base64()}\n")
    record(path, [scanned(a)])
    changed = classify(scanned(b), path.read_text().splitlines())
    assert record(path, [changed]) == 0
    assert a.get_base64() in path.read_text()
    assert record(path, [changed], replace=True) == 1
    text = path.read_text()
    assert text.startswith("# site keys\n10.9.9.9 ")
    assert b.get_base64() in text and a.get_base64() not in text
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".known_hosts.")]
    assert leftovers == [".known_hosts.lock"]  # no temp file left; the lock file stays
    # fingerprints are OpenSSH's: SHA256, base64 without padding
    assert fingerprint(a).startswith("SHA256:") and not fingerprint(a).endswith("=")


def test_a_key_of_another_type_for_a_known_host_is_a_change(tmp_path):
    """Issue 13 item 4: a man in the middle offering ECDSA for a host recorded with
    ed25519 was classified "new" and added under --yes."""
    recorded = paramiko.Ed25519Key.from_private_key_file(write_ed25519(tmp_path))
    mitm = paramiko.ECDSAKey.generate()
    path = tmp_path / "known_hosts"
    path.write_text(f"[10.0.0.1]:2222 {recorded.get_name()} {recorded.get_base64()}\n")
    s = classify(scanned(mitm), path.read_text().splitlines())
    assert s.status == "changed"
    assert (s.recorded_type, s.recorded_fingerprint) == ("ssh-ed25519", fingerprint(recorded))
    assert record(path, [s]) == 0 and mitm.get_base64() not in path.read_text()
    # --replace after a reinstall: every old key of the host goes, the new one stays
    assert record(path, [s], replace=True) == 1
    assert path.read_text() == f"[10.0.0.1]:2222 {mitm.get_name()} {mitm.get_base64()}\n"
    # another host's first key is still simply new
    assert classify(scanned(mitm, "10.0.0.2"), path.read_text().splitlines()).status == "new"


def write_ed25519(tmp_path) -> str:
    import subprocess

    key = tmp_path / "ed"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return str(key)


def test_record_holds_no_stale_decision(tmp_path):
    """A key found "new" by a scan but recorded by another process meanwhile is not
    written twice; a different key recorded meanwhile makes it a change."""
    a, b = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    path = tmp_path / "known_hosts"
    first = scanned(a)  # status "new" from a scan of the empty file
    assert record(path, [first]) == 1
    assert record(path, [first]) == 0  # the second writer re-reads under the lock
    assert record(path, [scanned(b)]) == 0  # now a change: needs --replace
    assert path.read_text().count("\n") == 1


WRITER = """
import sys, time, paramiko
from pathlib import Path
from gpuprov.engine.known_hosts import ScannedKey, fingerprint, record
path, me, start = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
keys = [paramiko.ECDSAKey.generate() for _ in range(8)]
while time.time() < start:
    time.sleep(0.001)
for i, k in enumerate(keys):
    entry = f"10.{me}.0.{i}"
    record(path, [ScannedKey(entry, entry, k.get_name(), k.get_base64(), fingerprint(k))])
"""


def test_concurrent_writers_lose_nothing(tmp_path):
    """Issue 13 item 21: known_hosts was rewritten without a lock; concurrent
    `hosts trust` runs lost each other's keys. 12 processes x 8 keys, started together."""
    import subprocess
    import sys
    import time

    path = tmp_path / "known_hosts"
    start = time.time() + 3
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(start)])
        for n in range(12)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    entries = {line.split()[0] for line in path.read_text().splitlines()}
    assert len(entries) == 12 * 8
