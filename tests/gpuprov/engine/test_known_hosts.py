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
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".known_hosts")]  # no temp left
    # fingerprints are OpenSSH's: SHA256, base64 without padding
    assert fingerprint(a).startswith("SHA256:") and not fingerprint(a).endswith("=")
