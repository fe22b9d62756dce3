"""Issue 13, item 22 (apt part): the signing key expires, the Release carries Valid-Until
by default, and the renewal path (extend the key, publish again) works; real apt refuses
an expired Release."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from gpuprov.aptrepo import extend_key, generate_key, load_key, publish_repo, verify_repo
from gpuprov.aptrepo.deb822 import parse_paragraphs
from gpuprov.aptrepo.publish import DEFAULT_VALID_FOR, rfc2822
from gpuprov.errors import InputError

NOW = datetime.now(UTC).replace(microsecond=0)


def release_fields(repo):
    return parse_paragraphs((repo / "dists/stable/Release").read_text())[0]


def test_release_has_valid_until_by_default(tmp_path, debs, key, keyring):
    date = NOW - timedelta(hours=1)
    publish_repo(debs, tmp_path / "r", suite="stable", key=key, date=date)
    assert timedelta(days=90) == DEFAULT_VALID_FOR
    assert release_fields(tmp_path / "r")["Valid-Until"] == rfc2822(date + DEFAULT_VALID_FOR)
    assert verify_repo(tmp_path / "r", keyring) == []
    problems = verify_repo(tmp_path / "r", keyring, now=date + timedelta(days=91))
    assert [p.message for p in problems] == [
        f"expired: Valid-Until {rfc2822(date + DEFAULT_VALID_FOR)}"
    ]
    publish_repo(debs, tmp_path / "n", suite="stable", key=key, valid_for=None)
    assert "Valid-Until" not in release_fields(tmp_path / "n")  # only when asked


def test_generated_key_expires_in_two_years_by_default(key):
    assert key.expires is not None
    assert timedelta(days=729) < key.expires - NOW <= timedelta(days=731)
    assert load_key(key.home).expires == key.expires


def test_key_expiring_before_valid_until_is_refused_then_extended(tmp_path, debs):
    key = generate_key(tmp_path / "g", "short", "s@gpuprov.invalid", expire="30d")
    with pytest.raises(InputError) as refused:
        publish_repo(debs, tmp_path / "r", suite="stable", key=key)
    message = str(refused.value)
    assert "before the Release's Valid-Until" in message
    assert f"gpuprov repo extend-key --home {key.home} --expire 2y" in message
    assert not (tmp_path / "r").exists()  # refused before anything was written

    renewed = extend_key(key, "1y")
    assert renewed.fingerprint == key.fingerprint  # the same key: clients keep trusting it
    assert renewed.expires is not None and renewed.expires - NOW > timedelta(days=360)
    keyring = renewed.export_public(tmp_path / "renewed.gpg")
    publish_repo(debs, tmp_path / "r", suite="stable", key=renewed)
    assert verify_repo(tmp_path / "r", keyring) == []


def test_bad_expiry_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="invalid key expiry"):
        generate_key(tmp_path / "g", "x", "x@gpuprov.invalid", expire="2y; rm -rf /")


def test_real_apt_refuses_an_expired_release(tmp_path, debs, key, keyring, apt, serve):
    repo = tmp_path / "repo"
    publish_repo(
        debs, repo, suite="stable", key=key,
        date=NOW - timedelta(days=10), valid_for=timedelta(days=1),
    )  # fmt: skip
    apt.configure(serve(repo), keyring)
    update = apt.run("update")
    assert update.returncode != 0
    assert "is expired" in update.stderr, update.stderr
    assert any("expired: Valid-Until" in p.message for p in verify_repo(repo, keyring))
    # Renewal: publish again (re-signs with a new Date and Valid-Until); apt accepts it.
    publish_repo(debs, repo, suite="stable", key=key)
    assert apt.run("update").returncode == 0


def test_keyring_on_the_client_names_the_expiry(tmp_path, key, keyring):
    listing = subprocess.run(
        ["gpg", "--homedir", str(tmp_path), "--batch", "--with-colons", "--show-keys",
         str(keyring)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    pub = next(ln.split(":") for ln in listing.splitlines() if ln.startswith("pub:"))
    assert pub[6] == str(int(key.expires.timestamp()))
