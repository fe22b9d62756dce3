"""The read/hash/write pipeline under export, verify and scan_tree, on real files: every
byte copied and hashed once, large inputs hashed on a second thread, errors from either
thread raised on the caller's with no thread left behind; and a bundle whose chunks are
large enough to take that path exported, verified, damaged and resumed."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from gpuprov.bundle import layout
from gpuprov.bundle.export import export_bundle
from gpuprov.bundle.pipeline import PIPELINE_MIN, SLOT, stream
from gpuprov.bundle.verify import verify_media

BIG = 2 * PIPELINE_MIN + 12_345  # pipelined, and not a whole number of blocks


class Recorder:
    """A sha256 that notes which threads fed it (and can be told to fail)."""

    def __init__(self, fail_after: int | None = None):
        self.inner = hashlib.sha256()
        self.threads: set[str] = set()
        self.calls = 0
        self.fail_after = fail_after

    def update(self, data: memoryview) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise ValueError("hash failed on purpose")
        self.threads.add(threading.current_thread().name)
        self.inner.update(data)


def hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gpuprov-hash"]


@pytest.fixture
def big_file(tmp_path) -> tuple[Path, bytes]:
    data = os.urandom(BIG)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return path, data


def test_large_input_is_copied_once_and_hashed_on_a_second_thread(big_file, tmp_path):
    path, data = big_file
    rec, plain = Recorder(), hashlib.sha256()
    seen: list[int] = []
    src = os.open(path, os.O_RDONLY)
    out = os.open(tmp_path / "copy.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        assert stream(src, BIG, [rec, plain], out, seen.append) == BIG
    finally:
        os.close(src)
        os.close(out)
    assert (tmp_path / "copy.bin").read_bytes() == data
    want = hashlib.sha256(data).hexdigest()
    assert rec.inner.hexdigest() == plain.hexdigest() == want
    assert rec.threads == {"gpuprov-hash"}  # not the caller's
    assert sum(seen) == BIG and max(seen) <= SLOT
    assert not hash_threads()


def test_small_input_is_hashed_in_line(tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(b"x" * 1000)
    rec = Recorder()
    fd = os.open(path, os.O_RDONLY)
    try:
        assert stream(fd, 1000, [rec]) == 1000
    finally:
        os.close(fd)
    assert rec.threads == {threading.current_thread().name}
    assert rec.inner.hexdigest() == hashlib.sha256(b"x" * 1000).hexdigest()


def test_stops_at_the_length_asked_and_at_end_of_file(big_file):
    path, data = big_file
    fd = os.open(path, os.O_RDONLY)
    try:
        first, rest = hashlib.sha256(), hashlib.sha256()
        part = PIPELINE_MIN + 3
        assert stream(fd, part, [first]) == part
        assert os.lseek(fd, 0, os.SEEK_CUR) == part  # not a byte further
        assert stream(fd, 10 * BIG, [rest]) == BIG - part  # end of file: fewer, no error
    finally:
        os.close(fd)
    assert first.hexdigest() == hashlib.sha256(data[:part]).hexdigest()
    assert rest.hexdigest() == hashlib.sha256(data[part:]).hexdigest()


def test_a_write_error_is_raised_and_the_hasher_stops(big_file):
    path, _ = big_file
    src = os.open(path, os.O_RDONLY)
    out = os.open(path, os.O_RDONLY)  # writing to it fails (EBADF)
    try:
        with pytest.raises(OSError):
            stream(src, BIG, [hashlib.sha256()], out)
    finally:
        os.close(src)
        os.close(out)
    assert not hash_threads()


def test_a_hash_error_is_raised_and_reading_stops(big_file):
    path, _ = big_file
    rec = Recorder(fail_after=2)
    src = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="on purpose"):
            stream(src, BIG, [rec])
        # The reader stopped soon after: at most a ring's worth past the failure.
        assert os.lseek(src, 0, os.SEEK_CUR) < BIG
    finally:
        os.close(src)
    assert not hash_threads()


def test_hash_file_takes_the_pipeline_and_agrees_with_hashlib(big_file):
    path, data = big_file
    assert layout.hash_file(path) == (BIG, hashlib.sha256(data).hexdigest())
    assert layout.hash_file(path, limit=PIPELINE_MIN + 1) == (
        PIPELINE_MIN + 1,
        hashlib.sha256(data[: PIPELINE_MIN + 1]).hexdigest(),
    )


def test_large_chunks_export_verify_and_resume(make_bundle, tmp_path, site_key):
    """Chunks above PIPELINE_MIN: copied and hashed on two threads, reassembled by verify,
    a damaged one named, a deleted one alone copied again."""
    big = os.urandom(BIG)
    blob = "oci/blobs/sha256/" + "b" * 64
    root = make_bundle({blob: big, "wheels/w.whl": b"wheel"})
    media = tmp_path / "media"
    media.mkdir()
    chunk = PIPELINE_MIN + 1  # three chunks: two pipelined, the last one in line
    result = export_bundle(root, media, chunk_size=chunk, filesystem="ext4")
    total = layout.load_manifest(root).total_size  # the blob, the wheel, keys/bundle.asc
    assert result.bytes_written == total and result.chunks == 5
    parts = [media / f"{blob}.part{i:04d}" for i in range(3)]
    assert b"".join(p.read_bytes() for p in parts) == big
    assert verify_media(media, site_key.keyring).ok

    middle = bytearray(parts[1].read_bytes())
    middle[len(middle) // 2] ^= 0xFF
    parts[1].write_bytes(bytes(middle))
    report = verify_media(media, site_key.keyring)
    assert [f.name for f in report.findings] == [parts[1].relative_to(media).as_posix()]

    parts[1].unlink()
    again = export_bundle(root, media, chunk_size=chunk, filesystem="ext4")
    assert again.bytes_written == chunk and again.bytes_reused == total - chunk
    assert parts[1].read_bytes() == big[chunk : 2 * chunk]
    assert verify_media(media, site_key.keyring).ok
    assert not hash_threads()
