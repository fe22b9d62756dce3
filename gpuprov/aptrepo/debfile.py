"""Reading one .deb: its control fields (via dpkg-deb, which validates them) and hashes."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gpuprov.aptrepo.deb822 import parse_paragraphs
from gpuprov.aptrepo.errors import BadPackage

# Debian policy 5.6.1 / 5.6.12; they also keep pool paths free of '/' and '..'.
# Matched with fullmatch: a `$` anchor accepts a trailing newline.
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
VERSION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~-]*")
ARCH = re.compile(r"[a-z0-9][a-z0-9-]*")
CHUNK = 1 << 20


@dataclass(frozen=True)
class DebInfo:
    path: Path
    control: dict[str, str]
    size: int
    md5: str
    sha256: str

    @property
    def package(self) -> str:
        return self.control["Package"]

    @property
    def version(self) -> str:
        return self.control["Version"]

    @property
    def architecture(self) -> str:
        return self.control["Architecture"]

    @property
    def source(self) -> str:
        # "Source: foo (1.2-1)" names the source package and, optionally, its version.
        return self.control.get("Source", self.package).split()[0]

    @property
    def canonical_name(self) -> str:
        version = self.version.split(":", 1)[-1]  # the epoch is not part of file names
        return f"{self.package}_{version}_{self.architecture}.deb"


def hash_file(path: Path) -> tuple[int, str, str]:
    """(size, md5, sha256) of a file in one read pass."""
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return size, md5.hexdigest(), sha256.hexdigest()


def read_deb(path: Path) -> DebInfo:
    """Control fields and hashes of a .deb; BadPackage (naming the file) if unusable."""
    if shutil.which("dpkg-deb") is None:
        raise BadPackage(path, "dpkg-deb not found (install the dpkg package)")
    proc = subprocess.run(
        ["dpkg-deb", "--field", str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        message = proc.stderr.strip().splitlines()
        raise BadPackage(
            path, f"not a readable .deb: {message[-1] if message else 'dpkg-deb failed'}"
        )
    try:
        paragraphs = parse_paragraphs(proc.stdout, source=f"{path} (control)")
    except ValueError as exc:
        raise BadPackage(path, str(exc)) from None
    if len(paragraphs) != 1:
        raise BadPackage(path, f"control has {len(paragraphs)} paragraphs, expected 1")
    control = paragraphs[0]
    checks = (("Package", PACKAGE_NAME), ("Version", VERSION), ("Architecture", ARCH))
    for field, pattern in checks:
        value = control.get(field)
        if value is None:
            raise BadPackage(path, f"control has no {field} field")
        if not pattern.fullmatch(value):
            raise BadPackage(path, f"invalid {field} {value!r} (expected {pattern.pattern})")
    if "Source" in control and not PACKAGE_NAME.fullmatch(control["Source"].split()[0]):
        raise BadPackage(path, f"invalid Source {control['Source']!r}")
    size, md5, sha256 = hash_file(path)
    return DebInfo(path=path, control=control, size=size, md5=md5, sha256=sha256)
