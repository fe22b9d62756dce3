"""Fixtures for the bundle tests: throwaway bundle keys (real gpg) and small real bundles
made with layout.py from real files (apt-like, oci-like, model-like trees)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from signed_bundles import write_signed_bundle

from gpuprov.aptrepo import SigningKey, generate_key
from gpuprov.bundle import layout

for tool in ("gpg", "gpgv"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (make system-deps)", allow_module_level=True)


@dataclass(frozen=True)
class Keys:
    key: SigningKey
    keyring: Path  # binary public keyring, as the far side holds it


def _keys(tmp: Path, name: str) -> Keys:
    key = generate_key(tmp / "home", name, "bundle@gpuprov.invalid")
    return Keys(key, key.export_public(tmp / "bundle.gpg"))


@pytest.fixture(scope="session")
def site_key(tmp_path_factory) -> Keys:
    return _keys(tmp_path_factory.mktemp("site-key"), "Site bundle key")


@pytest.fixture(scope="session")
def other_key(tmp_path_factory) -> Keys:
    return _keys(tmp_path_factory.mktemp("other-key"), "Someone else")


def sample_files(seed: int = 0, big: int = 300_000) -> dict[str, bytes]:
    """A small tree shaped like a real bundle; one file larger than the tests' chunk size."""
    rnd = os.urandom if seed < 0 else (lambda n: bytes((i * 31 + seed) % 251 for i in range(n)))
    return {
        "apt/debian12/dists/bookworm/Release": b"Origin: gpuprov\nSuite: bookworm\n",
        "apt/debian12/pool/main/a/alpha_1.0-1_amd64.deb": rnd(70_000),
        "apt/debian12/pool/main/b/beta_2.0-1_all.deb": rnd(5_000),
        "oci/oci-layout": b'{"imageLayoutVersion": "1.0.0"}\n',
        "oci/blobs/sha256/" + "a" * 64: rnd(big),
        "models/empty.txt": b"",
        "wheels/gpuprov-0.1-py3-none-any.whl": rnd(12_345),
    }


MakeBundle = Callable[..., Path]


@pytest.fixture
def make_bundle(tmp_path, site_key) -> MakeBundle:
    """make_bundle(files, name=..., keys=..., base=None) -> a signed bundle directory."""

    def make(
        files: dict[str, bytes] | None = None,
        *,
        name: str = "bundle",
        keys: Keys | None = None,
        base: layout.Manifest | None = None,
    ) -> Path:
        files = files if files is not None else sample_files()
        return write_signed_bundle(tmp_path / name, files, (keys or site_key).key.home, base)

    return make


@pytest.fixture
def fat32(tmp_path) -> Iterator[Path]:
    """A real FAT32 filesystem (mkfs.vfat on a 64 MiB image), mounted. The kernel's vfat
    driver through `mount -o loop` where it exists; where the kernel has no vfat module
    (this sandbox's kernel has none: mount says "unknown filesystem type 'vfat'"), the
    same image through fusefat, a userspace FAT driver: the on-disk format is the same."""
    if os.geteuid() != 0:
        pytest.skip("mounting a FAT32 image needs root")
    if shutil.which("mkfs.vfat") is None:
        pytest.skip("mkfs.vfat not installed (Debian package dosfstools)")
    image, mount = tmp_path / "usb.img", tmp_path / "usb"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "64M", image], check=True)
    subprocess.run(["mkfs.vfat", "-F", "32", image], check=True, capture_output=True)
    kernel = subprocess.run(
        ["mount", "-o", "loop", image, mount], capture_output=True, text=True, check=False
    )
    if kernel.returncode == 0:
        unmount = ["umount", str(mount)]
    elif shutil.which("fusefat") and Path("/dev/fuse").exists():
        subprocess.run(["fusefat", "-o", "rw+", image, mount], check=True, capture_output=True)
        unmount = ["fusermount", "-u", str(mount)]
    else:
        pytest.skip(
            f"mount -o loop failed ({kernel.stderr.strip()}) and fusefat is not installed "
            "(Debian package fusefat)"
        )
    try:
        yield mount
    finally:
        _unmount(unmount)


def _unmount(cmd: list[str]) -> None:
    """Unmount, waiting out a moment of "busy" (a just-killed writer's files closing);
    lazily as a last resort, so no mount outlives the test."""
    for _ in range(10):
        if subprocess.run(cmd, check=False, capture_output=True, timeout=30).returncode == 0:
            return
        time.sleep(0.5)
    subprocess.run([*cmd[:-1], "-z" if cmd[0] == "fusermount" else "-l", cmd[-1]],
                   check=False, capture_output=True, timeout=30)  # fmt: skip


def flip_byte(path: Path, offset: int = 7) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        old = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([old[0] ^ 0xFF]))
