"""gpgv's machine-readable verdict (`--status-fd`), read in full and judged as apt does.

gpgv exits 0 for a signature by an *expired* or *revoked* key (EXPKEYSIG, REVKEYSIG), and
for one made with a weak digest such as SHA1; its exit code alone is not a verdict. Each
signature starts with NEWSIG and ends in exactly one of GOODSIG, EXPSIG, EXPKEYSIG,
REVKEYSIG, BADSIG or ERRSIG (NO_PUBKEY beside ERRSIG); a good one is followed by VALIDSIG
`<fpr> <date> <timestamp> <expires> <version> <reserved> <pubkey-algo> <hash-algo> <class>
[<primary-fpr>]` (GnuPG's doc/DETAILS). A file is trusted only when gpgv exited 0, there
is at least one signature, and every signature is GOODSIG with a VALIDSIG whose digest is
strong. apt refuses the same (its gpgv method counts expired/revoked signers as
worthless and, since apt 2.7, SHA1 signatures as untrusted); we also refuse a file with
an expired, revoked, weak or bad signature beside a good one, where apt may only warn.
Only a signature by a key outside the keyring (NO_PUBKEY) is ignored beside a good one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

GPGV_TIMEOUT = 120  # seconds; gpgv on a Release or a manifest takes milliseconds


class GpgvUnavailable(Exception):
    """gpgv is not installed or did not finish: no verdict at all."""


def run(keyring: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """gpgv against `keyring` only (a binary keyring; an empty throwaway home, so no user or
    system keyring is ever consulted), with its status lines on stdout for `judge`."""
    if shutil.which("gpgv") is None:
        raise GpgvUnavailable("gpgv not found (install the gpgv package)")
    with tempfile.TemporaryDirectory(prefix="gpuprov-gpgv-") as home:
        argv = ["gpgv", "--homedir", home, "--status-fd", "1", "--keyring", str(keyring.absolute())]
        try:
            return subprocess.run(
                [*argv, *args], capture_output=True, text=True, check=False, timeout=GPGV_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise GpgvUnavailable(f"gpgv did not finish in {GPGV_TIMEOUT} s") from None


# RFC 4880 9.4 hash algorithm ids that no signature should rely on any more.
WEAK_DIGESTS = {1: "MD5", 2: "SHA1", 3: "RIPEMD160"}
DIGEST_NAMES = {8: "SHA256", 9: "SHA384", 10: "SHA512", 11: "SHA224"} | WEAK_DIGESTS

# Final status of one signature -> why it is refused (None: good).
VERDICTS = {
    "GOODSIG": None,
    "EXPSIG": "the signature itself has expired",
    "EXPKEYSIG": "signed by an expired key",
    "REVKEYSIG": "signed by a revoked key",
    "BADSIG": "bad signature (the signed text was changed)",
    "ERRSIG": "signature could not be checked",
}
_LINE = re.compile(r"\[GNUPG:\] ([A-Z_]+)(?: (.*))?")
_HEX = re.compile(r"[0-9A-Fa-f]{16,40}")

REMEDY = {
    "EXPKEYSIG": "extend the key (gpg --homedir HOME --quick-set-expire FPR 2y), re-sign with "
    "`gpuprov repo publish`, and give the clients the re-exported keyring",
    "REVKEYSIG": "publish again with a new key (gpuprov repo keygen) and give the clients its keyring",
    "EXPSIG": "publish again (`gpuprov repo publish` re-signs the Release)",
    "weak": "publish again with `gpuprov repo publish` (it signs with SHA512)",
}


@dataclass
class Signature:
    status: str = ""  # the final status keyword ("" when gpgv gave none)
    key: str = ""  # long key id or fingerprint as gpgv named it
    fingerprint: str = ""  # from VALIDSIG: the signing (sub)key
    primary: str = ""  # from VALIDSIG: its primary key, when gpgv names it
    digest: int | None = None  # VALIDSIG hash algorithm id
    no_pubkey: bool = False

    def problem(self) -> str | None:
        """Why this signature is not trusted, with what to do; None when it is good."""
        if self.status not in VERDICTS:
            return f"no verdict for signature {self.key or '(unknown key)'}"
        if self.status == "ERRSIG" and self.no_pubkey:
            return f"NO_PUBKEY {self.key}: not signed by a key in the given keyring"
        reason = VERDICTS[self.status]
        if reason is not None:
            remedy = REMEDY.get(self.status)
            return f"{self.status} {self.key}: {reason}" + (f"; {remedy}" if remedy else "")
        if not self.fingerprint or self.digest is None:
            return f"GOODSIG {self.key} without VALIDSIG"
        if self.digest in WEAK_DIGESTS:
            return (
                f"signature by {self.fingerprint} uses the weak digest "
                f"{WEAK_DIGESTS[self.digest]}; {REMEDY['weak']}"
            )
        if self.digest not in DIGEST_NAMES:
            return f"signature by {self.fingerprint} uses unknown digest algorithm {self.digest}"
        return None


def parse_status(text: str) -> tuple[list[Signature], list[str]]:
    """(signatures, other problems such as NODATA) from gpgv's --status-fd output."""
    sigs: list[Signature] = []
    other: list[str] = []
    for line in text.splitlines():
        m = _LINE.fullmatch(line.strip())
        if m is None:
            continue
        word, args = m.group(1), (m.group(2) or "").split(" ")
        if word == "NEWSIG" or (word in VERDICTS and (not sigs or sigs[-1].status)):
            # NEWSIG opens a signature; a verdict without one (old gpgv) opens one too.
            sigs.append(Signature())
            if word == "NEWSIG":
                continue
        if word in VERDICTS:
            sigs[-1].status = word
            sigs[-1].key = args[0] if args and _HEX.fullmatch(args[0]) else sigs[-1].key
        elif word == "NO_PUBKEY" and sigs:
            sigs[-1].no_pubkey = True
            sigs[-1].key = args[0]
        elif word == "VALIDSIG" and sigs and len(args) >= 8:
            sigs[-1].fingerprint = args[0]
            sigs[-1].digest = int(args[7]) if args[7].isdigit() else None
            sigs[-1].primary = args[9] if len(args) > 9 and _HEX.fullmatch(args[9]) else ""
        elif word in ("NODATA", "FAILURE", "BADARMOR", "UNEXPECTED"):
            other.append(f"{word} {' '.join(args)}".strip())
    return sigs, other


def judge(returncode: int, status: str) -> str | None:
    """None when every signature is good and strong; otherwise why not, in one line."""
    sigs, other = parse_status(status)
    good = [s for s in sigs if s.problem() is None]
    # A signature by a key outside the keyring beside a good one is ignored, as apt
    # does: a site rotating keys signs with both while clients hold one keyring.
    judged = [s for s in sigs if not (good and s.status == "ERRSIG" and s.no_pubkey)]
    problems = [p for s in judged if (p := s.problem()) is not None] + other
    if not sigs and not other:
        problems.append("no signature found")
    # gpgv exits 2 when one signature could not be checked (the ignored NO_PUBKEY above)
    unchecked_only = returncode == 2 and len(judged) < len(sigs)
    if not problems and returncode != 0 and not unchecked_only:
        problems.append(f"gpgv exited {returncode}")
    return "; ".join(problems) or None
