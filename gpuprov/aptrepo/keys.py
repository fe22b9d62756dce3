"""Repository signing keys: GnuPG with a private home directory, driven in batch mode.

Every call passes an explicit --homedir, so the user's ~/.gnupg is never read or
written, and stops the gpg-agent that gpg starts for private-key operations, so no
daemon outlives a publish. The public half is exported as a *binary* OpenPGP keyring
(`gpg --export`, extension .gpg): apt's signed-by accepts it on every apt version, and
gpgv, which apt and verify_repo use, reads it directly (an armored .asc keyring is
dearmored by newer apt only, and gpgv cannot read it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gpuprov.aptrepo.errors import GpgError, KeyNotFound
from gpuprov.errors import InputError

ALGORITHMS = ("ed25519", "rsa3072")
# A site key that never expires stays trusted by every client forever, even after it
# leaks; two years, extended in place (extend_key) long before, keeps one keyring in use.
DEFAULT_KEY_EXPIRE = "2y"
# Bounds the agent's start-up and shutdown; generous, as a loaded machine is slow.
AGENT_TIMEOUT_S = 60
_EXPIRE = re.compile(r"0|[1-9][0-9]{0,3}[dwmy]?|[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _gpg(home: Path, args: list[str], action: str, *, input: bytes | None = None) -> bytes:
    if shutil.which("gpg") is None:
        raise GpgError(action, "gpg not found (install the gnupg package)")
    cmd = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--quiet", *args]
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, check=False, timeout=300)
    except subprocess.TimeoutExpired:
        raise GpgError(action, "timed out after 300 s") from None
    finally:
        stop_agent(home)
    if proc.returncode != 0:
        raise GpgError(action, proc.stderr.decode(errors="replace"))
    return proc.stdout


def _agent_pid(home: Path) -> int | None:
    """The pid of the gpg-agent serving home, or None when none runs (never starts one)."""
    try:
        proc = subprocess.run(
            ["gpg-connect-agent", "--homedir", str(home), "--no-autostart", "getinfo pid", "/bye"],
            capture_output=True,
            check=False,
            timeout=AGENT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(rb"^D ([0-9]{1,10})$", proc.stdout, re.MULTILINE)
    return int(found.group(1)) if found else None


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent that gpg started on demand for home, and wait until it is gone.

    `gpgconf --kill` only asks: it returns while the agent still runs (and may still own
    its socket). The next gpg call then connected to the dying agent and failed ("No
    agent running", "End of file"), or started a second agent whose socket the first one
    unlinked on its way out; a busy machine stretched that window. So wait, bounded, for
    the process itself to exit.
    """
    pid = _agent_pid(home)
    try:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
            timeout=AGENT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return
    if pid is None:
        return
    deadline = time.monotonic() + AGENT_TIMEOUT_S
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _running(pid: int) -> bool:
    # A zombie has closed its sockets already; whoever reaps it may take its time.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _prepare_home(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)  # gpg warns about (and agents refuse) group/world-readable homes


@dataclass(frozen=True)
class SigningKey:
    """A secret key in a GnuPG home. `passphrase_file` unlocks a protected site key."""

    home: Path
    fingerprint: str
    uid: str
    passphrase_file: Path | None = None
    expires: datetime | None = None  # None: never

    def _unlock_args(self) -> list[str]:
        # Loopback always: a protected key without its passphrase then fails at once
        # instead of gpg-agent waiting for a pinentry nobody can answer.
        if self.passphrase_file is None:
            return ["--pinentry-mode", "loopback"]
        return ["--pinentry-mode", "loopback", "--passphrase-file", str(self.passphrase_file)]

    def export_public(self, keyring_out: Path) -> Path:
        """Write the public key as a binary keyring for apt's signed-by (atomically)."""
        data = _gpg(
            self.home,
            ["--export-options", "export-minimal", "--export", self.fingerprint],
            "export",
        )
        if not data:
            raise GpgError("export", f"no public key {self.fingerprint} in {self.home}")
        keyring_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = keyring_out.with_name(f".{keyring_out.name}.tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        tmp.replace(keyring_out)
        return keyring_out

    def export_public_armored(self) -> bytes:
        """The public key, ASCII-armored (to ship beside a signed bundle manifest)."""
        data = _gpg(
            self.home,
            ["--armor", "--export-options", "export-minimal", "--export", self.fingerprint],
            "export",
        )
        if not data:
            raise GpgError("export", f"no public key {self.fingerprint} in {self.home}")
        return data

    def clearsign(self, src: Path, dest: Path) -> None:
        """InRelease: the file with an inline signature."""
        self._sign(["--clearsign"], src, dest)

    def detach_sign(self, src: Path, dest: Path) -> None:
        """Release.gpg: an armored detached signature."""
        self._sign(["--armor", "--detach-sign"], src, dest)

    def _sign(self, mode: list[str], src: Path, dest: Path) -> None:
        args = [
            *self._unlock_args(),
            "--local-user",
            f"{self.fingerprint}!",  # '!': exactly this key, not a subkey gpg prefers
            "--digest-algo",
            "SHA512",
            "--yes",
            "--output",
            str(dest),
            *mode,
            str(src),
        ]
        _gpg(self.home, args, f"signing {src.name}")


def _secret_keys(home: Path) -> list[tuple[str, str, datetime | None]]:
    """(fingerprint, first uid, expiry) of each secret primary key in home."""
    out = _gpg(home, ["--with-colons", "--list-secret-keys"], "list-secret-keys").decode()
    keys: list[tuple[str, str, datetime | None]] = []
    expires: datetime | None = None
    want_fpr = False
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            want_fpr = True
            # field 7: expiry as seconds since the epoch, empty when the key never expires
            expires = datetime.fromtimestamp(int(fields[6]), UTC) if fields[6].isdigit() else None
        elif fields[0] == "fpr" and want_fpr:
            keys.append((fields[9], "", expires))
            want_fpr = False
        elif fields[0] == "uid" and keys and not keys[-1][1]:
            keys[-1] = (keys[-1][0], fields[9], keys[-1][2])
    return keys


def load_key(
    home: Path, fingerprint: str | None = None, *, passphrase_file: Path | None = None
) -> SigningKey:
    """The secret key in home (the only one, or the one with this fingerprint)."""
    if not home.is_dir():
        raise KeyNotFound(f"key home {home} does not exist (create one with: gpuprov repo keygen)")
    keys = _secret_keys(home)
    if fingerprint:
        wanted = fingerprint.replace(" ", "").upper()
        keys = [k for k in keys if k[0].endswith(wanted)]
        if not keys:
            raise KeyNotFound(f"no secret key {fingerprint} in {home}")
    if not keys:
        raise KeyNotFound(f"no secret key in {home} (create one with: gpuprov repo keygen)")
    if len(keys) > 1:
        listed = ", ".join(k[0] for k in keys)
        raise KeyNotFound(f"{home} holds several secret keys ({listed}); name one by fingerprint")
    fpr, uid, expires = keys[0]
    return SigningKey(
        home=home, fingerprint=fpr, uid=uid, passphrase_file=passphrase_file, expires=expires
    )


def generate_key(
    home: Path,
    name: str,
    email: str,
    *,
    algorithm: str = "ed25519",
    expire: str = DEFAULT_KEY_EXPIRE,
    passphrase_file: Path | None = None,
) -> SigningKey:
    """Create a signing-only key in a private GnuPG home.

    Without passphrase_file the key is unprotected (throwaway/test keys, or a site key
    whose home is itself protected); with it, the file's first line protects the key.
    expire is gpg's syntax: "0" never, "2y" (the default), "2027-12-31". Refuses a home that already
    holds a secret key, so a site key is never silently shadowed by a second one.
    """
    if algorithm not in ALGORITHMS:
        raise InputError(
            f"unknown key algorithm {algorithm!r} (choose from {', '.join(ALGORITHMS)})"
        )
    for label, value in (("name", name), ("email", email)):
        if not value or any(c in value for c in "<>\n:"):
            raise InputError(f"invalid key {label} {value!r}")
    _check_expire(expire)
    _prepare_home(home)
    existing = _secret_keys(home)
    if existing:
        raise KeyNotFound(
            f"{home} already holds secret key {existing[0][0]}; use it or another home"
        )
    if passphrase_file is None:
        unlock = ["--passphrase", ""]
    else:
        unlock = ["--passphrase-file", str(passphrase_file)]
    uid = f"{name} <{email}>"
    _gpg(
        home,
        [
            "--pinentry-mode",
            "loopback",
            *unlock,
            "--quick-generate-key",
            uid,
            algorithm,
            "sign",
            expire,
        ],
        "key generation",
    )
    key = load_key(home, passphrase_file=passphrase_file)
    return SigningKey(
        home=home,
        fingerprint=key.fingerprint,
        uid=uid,
        passphrase_file=passphrase_file,
        expires=key.expires,
    )


def _check_expire(expire: str) -> None:
    if not _EXPIRE.fullmatch(expire):
        raise InputError(f"invalid key expiry {expire!r} (0, 2y, 18m, 365d or 2027-12-31)")


def extend_key(key: SigningKey, expire: str = DEFAULT_KEY_EXPIRE) -> SigningKey:
    """Move the key's expiry to `expire` from now (gpg syntax), in place: same key, same
    fingerprint, so clients keep trusting it once they have the re-exported keyring
    (an expired key's old copy on a client still makes apt refuse: EXPKEYSIG)."""
    _check_expire(expire)
    _gpg(
        key.home,
        [*key._unlock_args(), "--quick-set-expire", key.fingerprint, expire],
        "extending the key",
    )
    return load_key(key.home, key.fingerprint, passphrase_file=key.passphrase_file)
