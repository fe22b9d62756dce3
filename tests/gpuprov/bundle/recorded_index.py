"""Recorded upstream indexes (tests/fixtures/ubuntu/) served like upstream, on loopback.

Each recorded stanza becomes a stand-in .deb (gpuprov's test-bed builder: same name,
version, architecture, priority and dependency fields, empty contents, a Description
saying it is a stand-in), and the stand-ins are published the way the upstream does:

- Ubuntu's archive: `dists/<suite>/main/binary-amd64/Packages` + `InRelease`
  (gpuprov's own publisher, origin "Ubuntu");
- NVIDIA's CUDA repository: a *flat* repository (`Packages`, `Release`, `InRelease` at
  its root, `Filename: ./name.deb`), made with apt-ftparchive as NVIDIA's is, used with
  `suites: ["/"]`.

The InRelease files are signed by test keys standing in for Ubuntu's and NVIDIA's archive
keys (the real signatures cannot cover a re-served excerpt).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from gpuprov.aptrepo import SigningKey, publish_repo
from gpuprov.aptrepo.deb822 import parse_paragraphs
from gpuprov.testbed.standins.build import build_package
from gpuprov.testbed.standins.catalog import PackageSpec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ubuntu"
NOBLE_MINBASE = FIXTURES / "noble-minbase.status"
NOBLE_HEADERS = FIXTURES / "noble-kernel-headers.stanzas"
NVIDIA_550 = FIXTURES / "nvidia-cuda-ubuntu2204-550.54.15.stanzas"


def read_stanzas(path: Path) -> list[dict[str, str]]:
    return parse_paragraphs(path.read_text(encoding="utf-8"), source=str(path))


def _relations(value: str | None) -> list[str]:
    """A Depends-like field as its comma-separated relations (alternatives kept)."""
    return [r.strip() for r in value.split(",")] if value else []


def standin_spec(stanza: dict[str, str]) -> PackageSpec:
    """The stand-in of one recorded stanza: every field apt's resolver reads."""
    return PackageSpec(
        name=stanza["Package"],
        version=stanza["Version"],
        summary=f"stand-in for {stanza['Package']} of a recorded index excerpt",
        section=stanza.get("Section", "misc"),
        depends=_relations(stanza.get("Depends")),
        pre_depends=_relations(stanza.get("Pre-Depends")),
        conflicts=_relations(stanza.get("Conflicts")),
        breaks=_relations(stanza.get("Breaks")),
        replaces=_relations(stanza.get("Replaces")),
        provides=_relations(stanza.get("Provides")),
        architecture=stanza["Architecture"],
        priority=stanza.get("Priority", "optional"),
        essential=stanza.get("Essential") == "yes",
        multi_arch=stanza.get("Multi-Arch", ""),
    )


def build_debs(stanzas: list[dict[str, str]], out_dir: Path) -> list[Path]:
    """Stand-in .debs for `stanzas` (cached by content in out_dir, like the test bed's)."""
    return sorted(build_package(standin_spec(s), out_dir) for s in stanzas)


def publish_archive(debs: list[Path], out: Path, suite: str, key: SigningKey) -> None:
    """An Ubuntu-archive-shaped repository: dists/<suite>/main, signed InRelease."""
    publish_repo(debs, out, suite=suite, key=key, origin="Ubuntu", label="Ubuntu",
                 description=f"stand-in of Ubuntu {suite} (recorded index excerpt)")  # fmt: skip


def publish_flat(debs: list[Path], out: Path, key: SigningKey) -> None:
    """A flat repository as NVIDIA's CUDA repositories are: the .debs, Packages(.gz),
    Release and its signatures at the root."""
    out.mkdir(parents=True)
    for deb in debs:
        shutil.copyfile(deb, out / deb.name)
    packages = subprocess.run(
        ["apt-ftparchive", "packages", "."], cwd=out, check=True, capture_output=True,
        timeout=120,
    ).stdout  # fmt: skip
    (out / "Packages").write_bytes(packages)
    subprocess.run(["gzip", "-9nk", "Packages"], cwd=out, check=True, timeout=60)
    release = subprocess.run(
        ["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=NVIDIA",
         "-o", "APT::FTPArchive::Release::Label=NVIDIA CUDA", "release", "."],
        cwd=out, check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    (out / "Release").write_bytes(release)
    key.clearsign(out / "Release", out / "InRelease")
    key.detach_sign(out / "Release", out / "Release.gpg")


def package_names(text: str) -> set[str]:
    return set(re.findall(r"^Package: (\S+)$", text, flags=re.MULTILINE))
