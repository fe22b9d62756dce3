"""TEST BED: the shared Debian root filesystems test hosts run: Debian 12 (bookworm, every
light host and VM by default) and Debian 13 (trixie, the VMs that need a newer container
stack: docker with CDI, podman).

Built once per suite with debootstrap from the Debian mirror this machine's apt is
configured with, then cached under `cache_dir()` keyed by a hash of the suite, the package
list and the post-install script, so a change to any of them builds a new one. Builds go to a temporary
directory renamed into place, under an fcntl lock, so parallel test processes build once.

Nothing here is used to provision real clusters: it only makes hosts for tests and the lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

SUITE = "bookworm"  # the default test host
SUITES = ("bookworm", "trixie")  # what the test bed can build (Debian 12, Debian 13)
PACKAGES = (
    "linux-image-amd64",
    "systemd-sysv",
    "openssh-server",
    "sudo",
    "python3",
    "iproute2",
    "ifupdown",
    "isc-dhcp-client",
    "ca-certificates",
    "gnupg",
    "pciutils",
    "kmod",
    "procps",
    "initramfs-tools",
    "curl",
)
TEST_USER = "gpuprov"
SEED_LABEL = "GPSEED"
DISK_SIZE = "3G"

# Run inside the fresh rootfs (chroot). Test hosts are air-gapped: no apt sources, so
# `apt-get update` only ever sees the repos a test adds. No host keys: each host gets its own.
_CONFIGURE = r"""
set -eu
rm -f /etc/ssh/ssh_host_*
: > /etc/apt/sources.list
rm -f /etc/apt/sources.list.d/*
apt-get clean
rm -rf /var/lib/apt/lists/*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
echo testbed > /etc/hostname
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > /etc/hosts
cat > /etc/network/interfaces <<'EOF'
# TEST BED: eth0 only (net.ifnames=0); a VM's seed disk replaces this file.
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
EOF
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > /etc/fstab
useradd --create-home --shell /bin/bash gpuprov
echo 'gpuprov ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/gpuprov
chmod 0440 /etc/sudoers.d/gpuprov
install -d -m 0700 /root/.ssh
install -d -m 0700 -o gpuprov -g gpuprov /home/gpuprov/.ssh
cat > /etc/ssh/sshd_config.d/gpuprov-testbed.conf <<'EOF'
# TEST BED: key-only logins, one host key written per host, no DNS lookups.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 50
EOF
cat > /usr/local/sbin/gpuprov-testbed-seed <<'EOF'
#!/bin/sh
# TEST BED: copy this VM's own files (host key, network, authorized keys, hostname) from
# its seed disk over the root filesystem, before sshd and networking start.
dev=/dev/disk/by-label/GPSEED
for _ in $(seq 50); do [ -e "$dev" ] && break; sleep 0.2; done
[ -e "$dev" ] || exit 0
mkdir -p /run/gpuprov-seed
mount -o ro "$dev" /run/gpuprov-seed || exit 1
cp -a /run/gpuprov-seed/files/. /
umount /run/gpuprov-seed
[ -s /etc/hostname ] && hostname "$(cat /etc/hostname)"
exit 0
EOF
chmod 0755 /usr/local/sbin/gpuprov-testbed-seed
cat > /etc/systemd/system/gpuprov-testbed-seed.service <<'EOF'
[Unit]
Description=TEST BED per-VM seed files
DefaultDependencies=no
After=local-fs.target systemd-udev-trigger.service
Before=ssh.service networking.service network-pre.target sysinit.target
Wants=network-pre.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/gpuprov-testbed-seed
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
EOF
systemctl enable gpuprov-testbed-seed.service
# Boot time is precious under software emulation: a small initramfs with only what a
# virtio disk needs (probing every module in the initramfs takes minutes under TCG)...
echo 'MODULES=list' > /etc/initramfs-tools/conf.d/gpuprov-testbed.conf
printf 'virtio_pci\nvirtio_blk\next4\n' >> /etc/initramfs-tools/modules
mount -t proc proc /proc
update-initramfs -u -k all
umount /proc
# ...and no periodic jobs.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
            fstrim.timer man-db.timer dpkg-db-backup.timer; do
  systemctl mask "$unit" >/dev/null 2>&1 || true
done
"""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """GPUPROV_CACHE, else <repo>/.cache/testbed (git-ignored), else ~/.cache/gpuprov."""
    env = os.environ.get("GPUPROV_CACHE")
    if env:
        path = Path(env)
    elif (repo_root() / "pyproject.toml").is_file():
        path = repo_root() / ".cache" / "testbed"
    else:
        path = Path.home() / ".cache" / "gpuprov" / "testbed"
    path.mkdir(parents=True, exist_ok=True)
    return path


def debian_mirror(
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
    sources_list: Path = Path("/etc/apt/sources.list"),
    suite: str = SUITE,
) -> str:
    """The first enabled `deb` URI this machine's apt uses for `suite` (deb822 or one-line).
    A suite apt does not list (trixie on a Debian 12 machine) comes from the archive that
    serves bookworm: one Debian archive carries every release."""
    candidates: list[str] = []
    for path in sorted(sources_dir.glob("*.sources")):
        for para in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if (
                "deb" in fields.get("types", "").split()
                and suite in fields.get("suites", "").split()
            ):
                candidates += fields.get("uris", "").split()
    legacy = [sources_list, *sorted(sources_dir.glob("*.list"))]
    for path in legacy:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                candidates.append(words[1])
    if not candidates and suite != SUITE:
        return debian_mirror(sources_dir, sources_list, SUITE)
    if not candidates:
        raise RuntimeError(
            f"no apt source for Debian {suite} found in {sources_dir} or {sources_list}"
        )
    return candidates[0]


def _check_suite(suite: str) -> None:
    if suite not in SUITES:
        raise ValueError(f"test bed suite {suite!r}: expected one of {', '.join(SUITES)}")


def _key(suite: str = SUITE) -> str:
    _check_suite(suite)
    digest = hashlib.sha256(f"{suite}\n{' '.join(PACKAGES)}\n{_CONFIGURE}".encode())
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_rootfs(*, suite: str = SUITE, log: Path | None = None) -> Path:
    """The cached rootfs directory of `suite`, building it first if needed (~90 s, ~900 MB)."""
    base = cache_dir()
    key = _key(suite)
    final = base / f"rootfs-{suite}-{key}"
    if (final / ".gpuprov-complete").exists():
        return final
    with _locked(base / f"rootfs-{key}.lock"):
        if (final / ".gpuprov-complete").exists():
            return final
        debs = base / ("debs" if suite == SUITE else f"debs-{suite}")
        debs.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".rootfs-{key}-", dir=base))
        logf = open(log or base / f"rootfs-{key}.log", "w")  # noqa: SIM115 (closed below)
        try:
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    f"--cache-dir={debs}",
                    suite,
                    str(tmp),
                    debian_mirror(suite=suite),
                ],
                check=True,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
            subprocess.run(
                # Own mount namespace: the /proc mounted for update-initramfs dies with it.
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "chroot",
                    str(tmp),
                    "/bin/sh",
                    "-c",
                    _CONFIGURE,
                ],
                check=True,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
            )
            (tmp / ".gpuprov-complete").write_text(key + "\n")
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            logf.close()
    return final


def kernel_and_initrd(rootfs: Path) -> tuple[Path, Path]:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise RuntimeError(f"no kernel/initrd in {rootfs}/boot")
    return kernels[-1], initrds[-1]


def ensure_disk_image(*, suite: str = SUITE, size: str = DISK_SIZE) -> Path:
    """A raw ext4 image of the suite's rootfs (mke2fs -d: no loop devices), cached beside it."""
    rootfs = ensure_rootfs(suite=suite)
    base = cache_dir()
    key = _key(suite)
    final = base / f"disk-{suite}-{key}-{size}.raw"
    if final.exists():
        return final
    with _locked(base / f"disk-{key}.lock"):
        if final.exists():
            return final
        fd, tmpname = tempfile.mkstemp(prefix=".disk-", suffix=".raw", dir=base)
        os.close(fd)
        os.unlink(tmpname)
        try:
            subprocess.run(
                [
                    "mke2fs",
                    "-q",
                    "-t",
                    "ext4",
                    "-L",
                    "gpuprov-root",
                    "-d",
                    str(rootfs),
                    tmpname,
                    size,
                ],
                check=True,
                capture_output=True,
            )
            os.rename(tmpname, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmpname)
            raise
    return final


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or [SUITE]:
        print(ensure_rootfs(suite=name))
        print(ensure_disk_image(suite=name))
