"""dnf repositories (RHEL/Rocky 9): a `.repo` file whose metadata and packages are both
checked against local key files, the way deploys/mirror_client.py points a RHEL host at
the site mirror (docs/deploys.md)."""

from __future__ import annotations

import base64
import re
import shlex

from pyinfra import host
from pyinfra.api import operation

from gpuprov.operations.files import changed_file_writes
from gpuprov.rendering import render

REPO_DIR = "/etc/yum.repos.d"
KEY_DIR = "/etc/pki/rpm-gpg"  # where RHEL keeps the keys its .repo files name
REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ARMOR_BEGIN = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
ARMOR_END = b"-----END PGP PUBLIC KEY BLOCK-----"
MAX_KEYRING_BYTES = 1024 * 1024  # a few keys with their signatures: kilobytes


class KeyringError(ValueError):
    """A keyring that is neither an armored public key block nor OpenPGP packets."""


def _crc24(data: bytes) -> int:
    """The armor checksum of RFC 4880 section 6.1."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armored_public_keys(data: bytes, what: str = "keyring") -> bytes:
    """The armored public key block dnf and rpm import (`gpgkey=` takes no binary
    keyring): an armored block as given; a binary keyring (what `gpg --export` writes and
    apt's Signed-By takes) armored here, byte for byte (RFC 4880 section 6), so the file
    on the hosts is the same on every apply without gpg on the control node."""
    if len(data) > MAX_KEYRING_BYTES:
        raise KeyringError(f"{what}: larger than {MAX_KEYRING_BYTES} bytes")
    stripped = data.strip()
    if stripped.startswith(ARMOR_BEGIN):
        if not stripped.endswith(ARMOR_END):
            raise KeyringError(f"{what}: an armored block without its END line")
        try:
            stripped.decode("ascii")
        except UnicodeDecodeError:
            raise KeyringError(f"{what}: an armored block with non-ASCII bytes") from None
        return stripped + b"\n"
    # A binary keyring starts with a public-key packet: tag 6 in the old format (0x98,
    # 0x99, 0x9a with a 1, 2 or 4 byte length) or the new one (0xc6).
    if not data or data[0] not in (0x98, 0x99, 0x9A, 0xC6):
        raise KeyringError(
            f"{what}: not an OpenPGP public keyring (binary, as `gpg --export` writes it, "
            "or armored, as `gpg --armor --export` does)"
        )
    body = base64.b64encode(data).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode()
    text = "\n".join([ARMOR_BEGIN.decode(), "", *lines, f"={crc}", ARMOR_END.decode(), ""])
    return text.encode()


def render_repo(repo_id: str, name: str, baseurl: str, key_paths: list[str]) -> str:
    return render(
        "gpuprov-mirror.repo.j2",
        repo_id=repo_id,
        repo_name=name,
        baseurl=baseurl,
        gpgkeys=" ".join(f"file://{p}" for p in key_paths),
    )


@operation()
def dnf_repo(
    repo_id: str,
    baseurl: str,
    keys: dict[str, bytes],
    name: str = "gpuprov site mirror",
    digests: dict[str, str | None] | None = None,
):
    """
    Point dnf at a signed repository: /etc/yum.repos.d/<repo_id>.repo with gpgcheck=1,
    repo_gpgcheck=1 and gpgkey= the armored key files written beside it in
    /etc/pki/rpm-gpg; `dnf makecache` of that repository only when a file changed (it
    fails when the metadata's signature does not verify).

    + repo_id: the repository id and file stem ("gpuprov-mirror")
    + baseurl: the repository URL (its repodata/ below it)
    + keys: file name in /etc/pki/rpm-gpg -> armored public keys
    + name: the repository's display name
    + digests: current sha256 per path (FileDigests); read from the host when None
    """
    if not REPO_ID_RE.fullmatch(repo_id):
        raise ValueError(f"repository id {repo_id!r}: letters, digits, . _ -")
    key_paths = {f"{KEY_DIR}/{n}": data for n, data in keys.items()}
    repo = render_repo(repo_id, name, baseurl, list(key_paths))
    files: dict[str, str | bytes] = {**key_paths, f"{REPO_DIR}/{repo_id}.repo": repo}
    writes = changed_file_writes(files.items(), digests)
    if not writes:
        host.noop(f"dnf repository {repo_id} ({baseurl}) is up to date")
        return
    yield from writes
    # Reads and verifies this repository's metadata now (the equivalent of apt-get update
    # after a source changed); the host's other repositories are not asked.
    yield f"dnf -y -q makecache --repo={shlex.quote(repo_id)}"
