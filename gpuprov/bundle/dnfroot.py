"""RHEL targets: the same step as aptroot.py with dnf in an installroot.

UNTESTED here: this machine reaches only Debian's archive (no RPM repository, no dnf),
so this path is written to the same shape as the apt one and exercised nowhere yet.

    ROOT/repos.d/upstream.repo  (gpgcheck=1, gpgkey= the inventory's keyring)
    dnf --installroot ROOT/installroot --setopt=reposdir=ROOT/repos.d ...
        module enable nvidia-driver:<branch>-open      (the driver is a module stream)
        download --resolve --alldeps --destdir ROOT/rpms <packages>

The installroot is empty, so `--alldeps` carries the whole closure (an rpmdb base like
apt's dpkg status is not supported yet). The downloaded RPMs become a repository with
`createrepo_c`, its repomd.xml signed (detached, armored) with the bundle key.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gpuprov.bundle.packages import OsPackages
from gpuprov.errors import GpuprovError
from gpuprov.inventory.bundle import AptSourceSpec

DNF_TIMEOUT_S = 1800


class DnfError(GpuprovError):
    """dnf could not resolve or fetch a bundle's packages (named in the message)."""


class DnfRoot:
    def __init__(self, root: Path, arch: str, sources: tuple[AptSourceSpec, ...]):
        self.root = Path(root).absolute()
        self.arch = arch
        self.sources = sources

    def prepare(self) -> None:
        if shutil.which("dnf") is None:
            raise DnfError("dnf is not installed on this machine: RHEL targets need it")
        for sub in ("repos.d", "installroot", "cache", "rpms", "keys"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        stanzas = []
        for i, src in enumerate(self.sources):
            key = self.root / "keys" / f"source{i}.asc"
            shutil.copyfile(src.keyring, key)
            stanzas.append(
                f"[source{i}]\nname=upstream {i}\nbaseurl={src.url}\nenabled=1\n"
                f"gpgcheck=1\nrepo_gpgcheck=0\ngpgkey=file://{key}\n"
            )
        (self.root / "repos.d" / "upstream.repo").write_text("\n".join(stanzas))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        base = [
            "dnf", "-y", "-q", f"--installroot={self.root / 'installroot'}", "--releasever=9",
            f"--forcearch={self.arch}", f"--setopt=reposdir={self.root / 'repos.d'}",
            f"--setopt=cachedir={self.root / 'cache'}", "--setopt=install_weak_deps=False",
            "--setopt=keepcache=1",
        ]  # fmt: skip
        try:
            return subprocess.run(
                [*base, *args], capture_output=True, text=True, timeout=DNF_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise DnfError(f"dnf {args[0]} took longer than {DNF_TIMEOUT_S} s") from None

    def download(self, label: str, pkgs: OsPackages, *, dry_run: bool) -> list[Path]:
        streams = [n for n in pkgs.wanted if ":" in n]  # nvidia-driver:580-open (one per OS here)
        for stream in streams:
            done = self.run("module", "enable", stream)
            if done.returncode != 0:
                raise DnfError(f"{label}: module stream {stream}: {done.stderr.strip()[-1500:]}")
        names = [n.split(":")[0] if ":" in n else n for n in pkgs.specs()]
        args = ["download", "--resolve", "--alldeps", f"--destdir={self.root / 'rpms'}"]
        if dry_run:
            args.append("--url")
        done = self.run(*args, *names)
        if done.returncode != 0:
            raise DnfError(
                f"{label}: dnf cannot resolve the bundle's packages:\n  {done.stderr.strip()[-2000:]}"
            )
        if dry_run:
            return []
        return sorted((self.root / "rpms").glob("*.rpm"))


def publish_rpm_repo(rpms: list[Path], out: Path, key) -> None:
    """RPMs -> out/Packages + repodata (createrepo_c), repomd.xml signed detached."""
    if shutil.which("createrepo_c") is None:
        raise DnfError("createrepo_c is not installed: RHEL targets need it")
    (out / "Packages").mkdir(parents=True, exist_ok=True)
    for rpm in rpms:
        shutil.copy2(rpm, out / "Packages" / rpm.name)
    done = subprocess.run(
        ["createrepo_c", "--quiet", str(out)], capture_output=True, text=True, timeout=DNF_TIMEOUT_S
    )
    if done.returncode != 0:
        raise DnfError(f"createrepo_c: {done.stderr.strip()[-1500:]}")
    repomd = out / "repodata" / "repomd.xml"
    key.detach_sign(repomd, repomd.with_name("repomd.xml.asc"))
