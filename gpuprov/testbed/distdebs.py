"""TEST BED: Debian packages a test host lacks, downloaded for its suite (the site mirror of
a test carries them: test hosts are air-gapped).

apt on this machine resolves `packages` against the test bed rootfs's own dpkg status
(what the host already has) and the suite's index from the Debian mirror, in a private
apt state directory, and downloads only the missing debs: docker.io and podman with
every dependency Debian 13 has and the rootfs does not. Cached per suite and package
list under the test bed cache; built under a lock, renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from gpuprov.testbed.rootfs import _locked, cache_dir, debian_mirror, ensure_rootfs

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def download_missing(suite: str, packages: tuple[str, ...], *, timeout: float = 1800) -> Path:
    """A directory of the .debs `packages` need on a fresh `suite` test host."""
    rootfs = ensure_rootfs(suite=suite)
    key = hashlib.sha256(f"{suite}\n{rootfs.name}\n{' '.join(packages)}".encode()).hexdigest()
    base = cache_dir()
    final = base / f"distdebs-{suite}-{key[:12]}"
    if (final / ".complete").exists():
        return final
    with _locked(base / f"distdebs-{key[:12]}.lock"):
        if (final / ".complete").exists():
            return final
        work = Path(tempfile.mkdtemp(prefix=f".distdebs-{suite}-", dir=base))
        try:
            state = work / "state"
            (state / "lists" / "partial").mkdir(parents=True)
            archives = work / "debs"
            (archives / "partial").mkdir(parents=True)
            sources = work / "sources.list"
            sources.write_text(
                f"deb [signed-by={KEYRING}] {debian_mirror(suite=suite)} {suite} main\n"
            )
            opts = [
                "-o", f"Dir::Etc::SourceList={sources}",
                "-o", "Dir::Etc::SourceParts=-",
                "-o", f"Dir::State={state}",
                "-o", f"Dir::State::status={rootfs / 'var/lib/dpkg/status'}",
                "-o", f"Dir::Cache={work / 'cache'}",
                "-o", f"Dir::Cache::Archives={archives}",
                "-o", "Dir::Etc::Preferences=/dev/null",
                "-o", "Dir::Etc::PreferencesParts=-",
                "-o", "APT::Architecture=amd64",
                "-o", "APT::Architectures=amd64",
                "-o", "APT::Install-Recommends=false",
                "-o", "Debug::NoLocking=true",
            ]  # fmt: skip
            (work / "cache").mkdir()
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
            for argv in (
                ["apt-get", *opts, "-q", "update"],
                ["apt-get", *opts, "-q", "-y", "--download-only", "install", *packages],
            ):
                proc = subprocess.run(
                    argv, capture_output=True, text=True, timeout=timeout, env=env
                )
                if proc.returncode != 0:
                    raise RuntimeError(
                        f"{' '.join(argv[:1] + argv[-3:])}: exit {proc.returncode}: "
                        f"{proc.stderr.strip()[-1500:]}"
                    )
            out = work / "out"
            out.mkdir()
            for deb in archives.glob("*.deb"):
                shutil.move(deb, out / deb.name)
            (out / ".complete").write_text(" ".join(packages) + "\n")
            os.rename(out, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


if __name__ == "__main__":
    import sys

    print(download_missing(sys.argv[1], tuple(sys.argv[2:])))
