"""Fixtures for the apt repository tests: tiny real .debs, a throwaway signing key, the
published directory served over real HTTP on loopback, and real apt-get with an
isolated state (its own sources, lists, cache, status and trust; no root-only setup)."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpuprov.aptrepo import SigningKey, deb822_source, generate_key

for tool in ("dpkg-deb", "gpg", "gpgv", "apt-get"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (make system-deps)", allow_module_level=True)


def build_deb(
    workdir: Path, name: str, version: str, arch: str, *, depends: str = "", payload: str = ""
) -> Path:
    root = workdir / f"src-{name}-{version.replace(':', '_')}-{arch}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    control = (
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: gpuprov tests <tests@gpuprov.invalid>\n"
        + (f"Depends: {depends}\n" if depends else "")
        + f"Description: test package {name}\n exercises the repository publisher\n"
    )
    (root / "DEBIAN" / "control").write_text(control)
    (root / "usr" / "share" / "doc" / name).mkdir(parents=True, exist_ok=True)
    (root / "usr" / "share" / "doc" / name / "README").write_text(payload or f"{name} {version}\n")
    out = workdir / "debs" / f"{root.name}.deb"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
        env={"SOURCE_DATE_EPOCH": "1700000000", "PATH": "/usr/bin:/bin"},
    )
    return out


@pytest.fixture(scope="session")
def debs(tmp_path_factory) -> list[Path]:
    """alpha (amd64) depends on exactly beta 2:2.0-1 (arch all); libgamma1 stands alone."""
    work = tmp_path_factory.mktemp("debs")
    return [
        build_deb(work, "alpha", "1.0-1", "amd64", depends="beta (= 2:2.0-1)"),
        build_deb(work, "beta", "2:2.0-1", "all"),
        build_deb(work, "libgamma1", "0.1", "amd64"),
    ]


@pytest.fixture(scope="session")
def key(tmp_path_factory) -> SigningKey:
    return generate_key(tmp_path_factory.mktemp("gnupg"), "gpuprov test", "test@gpuprov.invalid")


@pytest.fixture(scope="session")
def keyring(key, tmp_path_factory) -> Path:
    return key.export_public(tmp_path_factory.mktemp("keyring") / "gpuprov-test.gpg")


@pytest.fixture(scope="session")
def other_keyring(tmp_path_factory) -> Path:
    other = generate_key(
        tmp_path_factory.mktemp("gnupg-other"), "someone else", "other@gpuprov.invalid"
    )
    return other.export_public(tmp_path_factory.mktemp("keyring-other") / "other.gpg")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """serve(dir) -> base URL; every server is shut down after the test."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@dataclass
class Apt:
    """apt-get confined to a scratch directory: nothing of the host's apt state is used."""

    root: Path

    def configure(self, url: str, keyring: Path, suite: str = "stable") -> None:
        for sub in ("lists/partial", "archives/partial", "cache", "trusted.d", "conf.d"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        # Read before /etc/apt/apt.conf.d, and points that away: a build machine's
        # `Acquire::Check-Valid-Until "false"` there must not weaken the apt under test.
        (self.root / "apt.conf").write_text(
            f'Dir::Etc::Parts "{self.root / "conf.d"}";\nDir::Etc::Main "/dev/null";\n'
        )
        (self.root / "test.sources").write_text(deb822_source(url, suite, ["main"], str(keyring)))

    def options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::Etc::SourceList": r / "test.sources",
            "Dir::Etc::SourceParts": "/dev/null",
            "Dir::Etc::Trusted": "/dev/null",  # trust comes only from Signed-By
            "Dir::Etc::TrustedParts": r / "trusted.d",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": "/dev/null",
            "Dir::State::Lists": r / "lists",
            "Dir::State::Status": r / "status",
            "Dir::Cache": r / "cache",
            "Dir::Cache::Archives": r / "archives",
            "Debug::NoLocking": "1",
            "APT::Sandbox::User": "root",  # _apt could not read our private tmp dirs
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "Acquire::Languages": "none",
            "Acquire::Retries": "0",
            "Acquire::http::Proxy::127.0.0.1": "DIRECT",  # a host-wide proxy must not apply
        }
        return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", *self.options(), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "LC_ALL": "C.UTF-8",
                "APT_CONFIG": str(self.root / "apt.conf"),
            },
        )


@pytest.fixture
def apt(tmp_path) -> Apt:
    return Apt(tmp_path / "apt")
