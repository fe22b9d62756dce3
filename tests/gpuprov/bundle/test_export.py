"""bundle export onto a real FAT32 filesystem: chunks, hashes, fsync'd resume, space."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpuprov.bundle import layout
from gpuprov.bundle import media as m
from gpuprov.bundle.export import ExportError, export_bundle
from gpuprov.bundle.verify import verify_media
from gpuprov.errors import InputError

from .conftest import sample_files

CHUNK = 64 * 1024


def test_fat32_export_splits_hashes_and_reassembles(make_bundle, fat32, site_key):
    root = make_bundle()
    result = export_bundle(root, fat32, chunk_size=CHUNK)
    assert result.filesystem in m.SMALL_FILE_FILESYSTEMS
    # statfs on fusefat reports no size at all: unknown, said so (not taken as "0 free")
    assert result.space_checked is (result.filesystem != "fuse.fusefat")
    manifest = layout.load_manifest(root)
    assert result.bytes_written == result.bytes_total == manifest.total_size
    big = "oci/blobs/sha256/" + "a" * 64
    parts = sorted(p.name for p in (fat32 / "oci/blobs/sha256").iterdir())
    assert parts == [f"{'a' * 64}.part{i:04d}" for i in range(5)]  # 300,000 / 64 KiB
    index = json.loads((fat32 / m.MEDIA_INDEX).read_text())
    alpha = "apt/debian12/pool/main/a/alpha_1.0-1_amd64.deb"  # 70,000 bytes: 2 chunks
    assert index["chunk_size"] == CHUNK and list(index["split"]) == [alpha, big]
    assert len(index["split"][alpha]) == 2
    data = b"".join((fat32 / "oci/blobs/sha256" / p).read_bytes() for p in parts)
    assert data == sample_files()[big]
    for i, part in enumerate(parts):
        chunk = (fat32 / "oci/blobs/sha256" / part).read_bytes()
        assert hashlib.sha256(chunk).hexdigest() == index["split"][big][i]
    # small files lie whole, under their own names
    deb = "apt/debian12/pool/main/b/beta_2.0-1_all.deb"
    assert (fat32 / deb).read_bytes() == sample_files()[deb]
    assert (fat32 / layout.MANIFEST).read_bytes() == (root / layout.MANIFEST).read_bytes()
    assert not (fat32 / m.JOURNAL).exists()
    assert not [p for p in fat32.rglob("*") if p.name.endswith(".tmp")]
    assert verify_media(fat32, site_key.keyring).ok
    # a re-run re-checks every chunk and writes nothing
    again = export_bundle(root, fat32, chunk_size=CHUNK)
    assert again.bytes_written == 0 and again.bytes_reused == result.bytes_total


def test_fat32_default_chunk_is_below_the_fat32_limit(make_bundle, fat32):
    result = export_bundle(make_bundle(), fat32)
    assert result.chunk_size == m.FAT32_CHUNK < m.FAT32_MAX_FILE
    assert m.chunk_count(m.FAT32_MAX_FILE, m.FAT32_CHUNK) == 2
    assert m.chunk_count(m.FAT32_CHUNK, m.FAT32_CHUNK) == 1
    with pytest.raises(InputError, match="must be 1..4294967295"):
        export_bundle(make_bundle(name="b2"), fat32, chunk_size=2**32)


def test_ext4_gets_no_chunks(make_bundle, tmp_path):
    dest = tmp_path / "disk"
    dest.mkdir()
    assert m.filesystem_of(dest) not in m.SMALL_FILE_FILESYSTEMS
    result = export_bundle(make_bundle(), dest)
    assert result.chunk_size is None
    assert result.space_checked is True
    assert not [p for p in dest.rglob("*.part*")]


def test_too_small_media_refused_before_the_first_byte(make_bundle, tmp_path):
    dest = tmp_path / "small"
    dest.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", dest], check=True)
    try:
        with pytest.raises(InputError, match=r"needs [\d,]+ bytes, [\d,]+ free"):
            export_bundle(make_bundle(), dest)
        assert list(dest.iterdir()) == []
    finally:
        subprocess.run(["umount", dest], check=True)


def test_non_empty_and_foreign_targets_refused(make_bundle, tmp_path):
    dest = tmp_path / "usb"
    dest.mkdir()
    (dest / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match=r"not empty \(holiday.jpg\)"):
        export_bundle(make_bundle(), dest)
    (dest / "holiday.jpg").unlink()
    export_bundle(make_bundle(name="one"), dest)
    other = sample_files(seed=3)
    with pytest.raises(InputError, match="holds another bundle"):
        export_bundle(make_bundle(other, name="two"), dest)


def test_source_changed_after_build_is_refused_and_not_left_behind(make_bundle, tmp_path):
    root = make_bundle()
    big = "oci/blobs/sha256/" + "a" * 64
    with open(root / big, "r+b") as fh:  # same size, different bytes
        fh.seek(200_000)
        fh.write(b"tampered")
    dest = tmp_path / "usb"
    dest.mkdir()
    with pytest.raises(ExportError, match=f"{big}: sha256 .* differs from the manifest"):
        export_bundle(root, dest, chunk_size=CHUNK)
    assert not list((dest / "oci/blobs/sha256").iterdir())
    assert not (dest / layout.MANIFEST).exists()


def test_changed_unsplit_file_is_refused(make_bundle, tmp_path):
    root = make_bundle()
    deb = "apt/debian12/pool/main/b/beta_2.0-1_all.deb"
    flip = bytearray((root / deb).read_bytes())
    flip[10] ^= 0xFF
    (root / deb).write_bytes(bytes(flip))
    dest = tmp_path / "disk"
    dest.mkdir()
    with pytest.raises(ExportError, match=f"{deb}: sha256 .* differs from the manifest"):
        export_bundle(root, dest)  # ext4: no chunks, every file hashed once while copied
    assert not (dest / deb).exists()


def _big_bundle(make_bundle) -> Path:
    files = {f"models/shard-{i}.bin": os.urandom(2 * 1024 * 1024) for i in range(6)}
    return make_bundle(files, name="big")


def test_kill_9_mid_export_then_resume_copies_only_the_rest(make_bundle, fat32, site_key):
    """The resumed run's own write(2) byte count (/proc/self/io wchar, kept by the
    kernel, not by us) proves the chunks verified on the media were not copied again."""
    root = _big_bundle(make_bundle)
    total = layout.load_manifest(root).total_size
    cmd = [sys.executable, "-c", "from gpuprov.cli import main; main()", "bundle", "export",
           str(root), "--to", str(fat32), "--chunk-size", str(CHUNK), "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = fat32 / m.JOURNAL

    def far_enough() -> bool:
        try:
            return journal.read_text().count("\n") > 40
        except FileNotFoundError:
            return False
        except PermissionError:
            # fusefat (where the kernel has no vfat) refuses to read a file that the
            # export is in the middle of appending to: look again after it moves on
            return False

    # Look only while the export is frozen: a loaded machine could otherwise let it run
    # from "41 chunks" to "finished" between the look and the kill.
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, "the export finished before it could be killed"
        proc.send_signal(signal.SIGSTOP)
        if far_enough():
            break
        proc.send_signal(signal.SIGCONT)
        assert time.monotonic() < deadline, "the export wrote no 40 chunks in 300 s"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the export finished before it could be killed"
    assert not (fat32 / layout.MANIFEST).exists()
    unfinished = verify_media(fat32, site_key.keyring)
    assert [str(f) for f in unfinished.findings] == [
        "manifest.json: missing: an unfinished export (run it again)"
    ]

    resume = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from gpuprov.bundle.export import export_bundle\n"
        f"r = export_bundle(Path({str(root)!r}), Path({str(fat32)!r}), chunk_size={CHUNK})\n"
        "io = dict(l.split(': ') for l in Path('/proc/self/io').read_text().splitlines())\n"
        "print(json.dumps({**r.as_dict(), 'wchar': int(io['wchar'])}))\n"
    )
    out = subprocess.run([sys.executable, "-c", resume], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    result = json.loads(out.stdout)
    assert result["bytes_reused"] >= 40 * CHUNK
    assert result["bytes_written"] + result["bytes_reused"] == total
    # everything the process wrote: the missing chunks plus a few KiB of journal/index
    assert result["bytes_written"] <= result["wchar"] < total - result["bytes_reused"] + 256 * 1024
    assert verify_media(fat32, site_key.keyring).ok
