"""verify_repo against real gpg signatures apt would not trust (issue 13, item 6): an
expired key (made in the past with gpg's --faked-system-time), a revoked key, an expired
signature, a SHA1 digest; and against what no signature covers: an MD5-only index, an
unsigned Release that is not the InRelease text, files outside dists/ and pool/."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpuprov.aptrepo import SigningKey, generate_key, publish_repo, verify_repo
from gpuprov.aptrepo.gpgv_status import judge, parse_status
from gpuprov.aptrepo.keys import stop_agent

PAST = "20200101T000000"  # key creation and signing time for the expired cases


def gpg(home: Path, *args: str) -> None:
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--quiet", *args],
        check=True,
        capture_output=True,
        timeout=120,
    )
    stop_agent(home)  # and wait until it is gone: the next call must not meet it dying


def make_key(home: Path, *, created: str | None = None, expire: str = "0") -> Path:
    """A signing key in its own home (created at `created`, gpg time syntax); its keyring."""
    home.mkdir(mode=0o700)
    when = ["--faked-system-time", created] if created else []
    gpg(home, *when, "--pinentry-mode", "loopback", "--passphrase", "",
        "--quick-generate-key", "gpuprov test <t@gpuprov.invalid>", "ed25519", "sign", expire)  # fmt: skip
    keyring = home / "pub.gpg"
    out = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--export"], capture_output=True, check=True
    )
    keyring.write_bytes(out.stdout)
    return keyring


def resign(dist: Path, home: Path, *args: str) -> None:
    """InRelease and Release.gpg of dist, signed again by the key in home with gpg args."""
    common = ["--yes", "--pinentry-mode", "loopback", "--passphrase", "", *args]
    gpg(home, *common, "--output", str(dist / "InRelease"), "--clearsign", str(dist / "Release"))
    gpg(home, *common, "--output", str(dist / "Release.gpg"), "--armor", "--detach-sign",
        str(dist / "Release"))  # fmt: skip


@pytest.fixture
def repo(tmp_path, debs, key) -> Path:
    publish_repo(debs, tmp_path / "repo", suite="stable", key=key)
    return tmp_path / "repo"


def signature_errors(repo: Path, keyring: Path) -> list[str]:
    return sorted(
        f"{Path(p.location.file).name}: {p.message}"
        for p in verify_repo(repo, keyring)
        if p.severity == "error"
    )


def test_good_repository_passes(repo, keyring):
    assert verify_repo(repo, keyring) == []


def test_signature_by_expired_key_is_refused(repo, tmp_path):
    home = tmp_path / "expired"
    keyring = make_key(home, created=PAST, expire="1d")
    resign(repo / "dists/stable", home, "--faked-system-time", "20200101T000100")
    found = signature_errors(repo, keyring)
    assert len(found) == 2, found  # InRelease and Release.gpg
    assert all("EXPKEYSIG" in e and "quick-set-expire" in e for e in found), found


def test_signature_by_revoked_key_is_refused(repo, tmp_path):
    home = tmp_path / "revoked"
    make_key(home)
    resign(repo / "dists/stable", home)
    # gpg writes a revocation certificate at key creation; import it (its first armor
    # line is escaped with ':' so it cannot be imported by accident).
    rev = next((home / "openpgp-revocs.d").glob("*.rev"))
    cert = home / "rev.asc"
    cert.write_text(rev.read_text().replace(":-----BEGIN", "-----BEGIN"))
    gpg(home, "--import", str(cert))
    keyring = home / "revoked.gpg"
    keyring.write_bytes(
        subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--export"], capture_output=True, check=True
        ).stdout
    )
    found = signature_errors(repo, keyring)
    assert len(found) == 2 and all("REVKEYSIG" in e for e in found), found


def test_expired_signature_is_refused(repo, tmp_path):
    home = tmp_path / "sigexpire"
    keyring = make_key(home, created=PAST)
    resign(
        repo / "dists/stable", home,
        "--faked-system-time", "20200101T000100", "--default-sig-expire", "1d",
    )  # fmt: skip
    found = signature_errors(repo, keyring)
    assert len(found) == 2 and all("EXPSIG" in e for e in found), found


def test_sha1_signature_is_refused(repo, tmp_path):
    home = tmp_path / "sha1"
    keyring = make_key(home)
    resign(repo / "dists/stable", home, "--digest-algo", "SHA1")
    found = signature_errors(repo, keyring)
    assert len(found) == 2 and all("weak digest SHA1" in e for e in found), found
    resign(repo / "dists/stable", home, "--digest-algo", "SHA256")
    assert verify_repo(repo, keyring) == []  # the same key with SHA256 is fine


def test_index_covered_only_by_md5_is_refused(repo, tmp_path):
    home = tmp_path / "k"
    keyring = make_key(home)
    dist = repo / "dists/stable"
    release = dist / "Release"
    # Drop Packages.xz from the SHA256 list only: MD5Sum still lists it.
    lines = release.read_text().splitlines(keepends=True)
    sha_at = lines.index("SHA256:\n")
    lines = lines[: sha_at + 1] + [
        ln for ln in lines[sha_at + 1 :] if not ln.endswith("binary-amd64/Packages.xz\n")
    ]
    release.write_text("".join(lines))
    resign(dist, home)
    found = signature_errors(repo, keyring)
    assert found == [
        "Packages.xz: covered only by MD5Sum in Release (needs SHA256); "
        "publish again with `gpuprov repo publish`"
    ]


def test_unsigned_release_differing_from_inrelease_is_refused(repo, keyring):
    dist = repo / "dists/stable"
    (dist / "Release.gpg").unlink()
    release = dist / "Release"
    release.write_text(release.read_text().replace("Origin: gpuprov", "Origin: mallory"))
    found = signature_errors(repo, keyring)
    assert len(found) == 1 and found[0].startswith("Release: differs from the text signed"), found


def test_files_outside_dists_and_pool_are_refused(repo, keyring, tmp_path):
    (repo / "install.sh").write_text("curl evil | sh\n")
    (repo / "dists/notes.txt").write_text("x\n")
    outside = tmp_path / "secret"
    outside.write_text("not for the cluster\n")
    (repo / "pool/main/leak").symlink_to(outside)
    found = signature_errors(repo, keyring)
    assert found == [
        "install.sh: not part of the repository (only dists/ and pool/ may be served); "
        "remove it or publish it elsewhere",
        "leak: symbolic link in the repository; remove it",
        "notes.txt: not a suite folder; remove it",
    ]


def test_status_parser_reads_real_gpgv_output(repo, keyring):
    """The parser on gpgv's own output for a good signature, and its verdicts."""
    proc = subprocess.run(
        ["gpgv", "--homedir", str(repo), "--status-fd", "1", "--keyring", str(keyring),
         str(repo / "dists/stable/InRelease")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    sigs, other = parse_status(proc.stdout)
    assert other == [] and len(sigs) == 1
    assert sigs[0].status == "GOODSIG" and sigs[0].digest == 10  # SHA512, as publish signs
    assert judge(proc.returncode, proc.stdout) is None
    assert judge(0, "") == "no signature found"
    # A GOODSIG without its VALIDSIG (truncated output) is not a good signature.
    assert "without VALIDSIG" in judge(0, "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 0123456789ABCDEF x\n")


def test_key_generated_now_signs_for_today(tmp_path, debs):
    """Sanity for the fixtures above: a fresh key's repository verifies at today's date."""
    key: SigningKey = generate_key(tmp_path / "g", "fresh", "f@gpuprov.invalid", expire="1y")
    keyring = key.export_public(tmp_path / "fresh.gpg")
    publish_repo(debs, tmp_path / "r", suite="stable", key=key)
    assert verify_repo(tmp_path / "r", keyring, now=datetime.now(UTC)) == []


def test_second_signature_by_a_key_outside_the_keyring_is_ignored(repo, keyring, key, tmp_path):
    """Key rotation: InRelease signed by the site key and by a key the clients do not
    hold yet is fine (as apt); with both keys in the keyring both must be good."""
    other = tmp_path / "other"
    make_key(other)
    dist = repo / "dists/stable"
    release = dist / "Release"

    def sign_twice(*second: str) -> None:
        # gpg signs with every --local-user given, in one signature block
        secret = subprocess.run(
            ["gpg", "--homedir", str(key.home), "--batch", "--pinentry-mode", "loopback",
             "--passphrase", "", "--export-secret-keys"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        # that export started an agent on the session key's home: stop it (no daemon left)
        stop_agent(key.home)
        subprocess.run(["gpg", "--homedir", str(other), "--batch", "--import"], input=secret,
                       check=True, capture_output=True)  # fmt: skip
        fprs = [key.fingerprint, *second]
        users = [arg for f in fprs for arg in ("--local-user", f"{f}!")]
        gpg(other, "--yes", "--pinentry-mode", "loopback", "--passphrase", "", *users,
            "--digest-algo", "SHA512", "--output", str(dist / "InRelease"), "--clearsign",
            str(release))  # fmt: skip
        (dist / "Release.gpg").unlink(missing_ok=True)

    other_fpr = (
        subprocess.run(
            ["gpg", "--homedir", str(other), "--batch", "--with-colons", "--list-secret-keys"],
            check=True, capture_output=True, text=True,
        ).stdout.split("fpr:::::::::")[1].split(":")[0]
    )  # fmt: skip
    sign_twice(other_fpr)
    assert verify_repo(repo, keyring) == []  # the other key is not in the keyring: ignored
    both = tmp_path / "both.gpg"
    both.write_bytes(
        keyring.read_bytes()
        + subprocess.run(
            ["gpg", "--homedir", str(other), "--batch", "--export", other_fpr],
            check=True, capture_output=True,
        ).stdout
    )  # fmt: skip
    assert verify_repo(repo, both) == []  # both good
