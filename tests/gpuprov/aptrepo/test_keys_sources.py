from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gpuprov.aptrepo import KeyNotFound, deb822_source, generate_key, load_key
from gpuprov.errors import InputError


def test_key_loads_back_and_exports_a_binary_keyring(key, keyring, tmp_path):
    assert len(key.fingerprint) == 40
    assert load_key(key.home).fingerprint == key.fingerprint
    assert load_key(key.home, key.fingerprint[-16:]).uid == "gpuprov test <test@gpuprov.invalid>"
    data = keyring.read_bytes()
    assert not data.startswith(b"-----BEGIN")  # binary OpenPGP, usable by gpgv directly
    listing = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(tmp_path),
            "--batch",
            "--with-colons",
            "--show-keys",
            str(keyring),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"fpr:::::::::{key.fingerprint}:" in listing
    assert "sec" not in listing  # no secret material in the exported keyring


def test_second_key_in_same_home_is_refused(key):
    with pytest.raises(KeyNotFound, match="already holds secret key"):
        generate_key(key.home, "again", "again@gpuprov.invalid")


def test_missing_or_empty_home(tmp_path):
    with pytest.raises(KeyNotFound, match="does not exist"):
        load_key(tmp_path / "nope")
    (tmp_path / "empty").mkdir(mode=0o700)
    with pytest.raises(KeyNotFound, match="no secret key"):
        load_key(tmp_path / "empty")


def test_rsa3072_and_bad_algorithm(tmp_path):
    with pytest.raises(InputError, match="unknown key algorithm"):
        generate_key(tmp_path / "x", "n", "e@x", algorithm="dsa1024")
    rsa = generate_key(tmp_path / "rsa", "rsa site", "rsa@gpuprov.invalid", algorithm="rsa3072")
    assert len(rsa.fingerprint) == 40


def test_deb822_source_stanza():
    text = deb822_source(
        "http://mirror.lab:8080/apt", "bookworm", ["main", "extra"], "/etc/apt/keyrings/gpuprov.gpg"
    )
    assert text == (
        "Types: deb\n"
        "URIs: http://mirror.lab:8080/apt\n"
        "Suites: bookworm\n"
        "Components: main extra\n"
        "Signed-By: /etc/apt/keyrings/gpuprov.gpg\n"
    )
    assert "trusted" not in text.lower()


@pytest.mark.parametrize(
    ("url", "suite", "comps", "keyring", "expect"),
    [
        ("ftp://x", "s", ["main"], "/k.gpg", "URL"),
        ("http://x", "s", ["main"], "k.gpg", "absolute"),
        ("http://x", "s\nTrusted: yes", ["main"], "/k.gpg", "invalid suite"),
        ("http://x", "s", [], "/k.gpg", "at least one component"),
    ],
)
def test_deb822_source_rejects_bad_values(url, suite, comps, keyring, expect):
    with pytest.raises(InputError, match=expect):
        deb822_source(url, suite, comps, keyring)


def test_protected_key_signs_only_with_its_passphrase(tmp_path, debs, keyring):
    from gpuprov.aptrepo import GpgError, publish_repo

    secret = tmp_path / "passphrase"
    secret.write_text("correct horse battery staple\n")
    # Test-only: a cheap S2K count, or gpg-agent spends seconds calibrating on a busy CI
    # box. Real site keys keep gpg's calibrated default.
    (tmp_path / "site").mkdir(mode=0o700)
    (tmp_path / "site" / "gpg-agent.conf").write_text("s2k-count 65536\n")
    site = generate_key(tmp_path / "site", "site", "site@gpuprov.invalid", passphrase_file=secret)
    site_keyring = site.export_public(tmp_path / "site.gpg")
    locked = load_key(site.home)  # no passphrase given
    with pytest.raises(GpgError, match="signing Release"):
        publish_repo(debs, tmp_path / "r", suite="s", key=locked)
    assert not (tmp_path / "r").exists()
    publish_repo(debs, tmp_path / "r", suite="s", key=site)
    from gpuprov.aptrepo import verify_repo

    assert verify_repo(tmp_path / "r", site_keyring) == []


def _live_agents(home: Path) -> list[int]:
    """Pids of gpg-agent processes serving home that have not exited (zombies excluded)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if b"gpg-agent" in argv[0] and str(home).encode() in argv and state not in "ZX":
            pids.append(int(proc.name))
    return pids


def test_no_agent_outlives_a_gpg_call(tmp_path):
    """Each call returns only once its gpg-agent is gone: a dying agent that still held
    its socket made the next call fail on a loaded machine ("No agent running")."""
    key = generate_key(tmp_path / "home", "agent", "agent@gpuprov.invalid")
    assert _live_agents(key.home) == []
    (tmp_path / "f").write_text("x\n")
    for _ in range(10):
        key.clearsign(tmp_path / "f", tmp_path / "f.asc")
        assert _live_agents(key.home) == []
        assert load_key(key.home).fingerprint == key.fingerprint
        assert _live_agents(key.home) == []
