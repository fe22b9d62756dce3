"""Typed errors of the apt repository publisher (see gpuprov.errors for exit codes)."""

from __future__ import annotations

from pathlib import Path

from gpuprov.errors import GpuprovError, InputError, Location, Problem


class GpgError(GpuprovError):
    """gpg failed (key generation, export, signing). Carries gpg's own message."""

    def __init__(self, action: str, stderr: str):
        self.action = action
        self.stderr = stderr.strip()
        super().__init__(f"gpg {action} failed: {self.stderr or 'no message'}")


class KeyNotFound(InputError):
    """The key home holds no usable secret key (or not the one asked for)."""


class BadPackage(InputError):
    """A .deb that cannot be read or whose control fields are unusable."""

    def __init__(self, path: Path, message: str):
        self.path = path
        super().__init__([Problem(Location(str(path)), message)])


class DuplicatePackageError(InputError):
    """Two different files claim the same package, version and architecture."""

    def __init__(self, first: Path, second: Path, package: str, version: str, arch: str):
        self.first, self.second = first, second
        message = (
            f"{package} {version} ({arch}) is also in {first} with different content; "
            "a repository can hold only one file per package, version and architecture"
        )
        super().__init__([Problem(Location(str(second)), message)])
