"""Read a file once, hash it on a second thread, and (optionally) write it on the first.

SHA-256 is the slowest step of export, verify and scan_tree, and one file's hash cannot
be split. Measured on this project's 2-core test machine, per MiB from the page cache:
read 0.22 ms, hash 0.54 ms, write to tmpfs 0.31 ms. Done in line on one thread that
is 1.07 ms (export) or 0.76 ms (verify); with the I/O (read, then write) on the
calling thread and the hashing on a helper thread, the slower side bounds it: 0.54 ms,
the hash alone. So one large file goes at about the single-thread SHA-256 speed, and
several files on a pool keep every core busy. hashlib and os.readv/os.write release
the GIL for blocks this large, so the two threads really run at once.

Buffers are a ring of SLOTS slots of SLOT bytes reused for the whole file (no allocation
per read); a slot is read into again only after the hasher is done with it. The ring
(1 MiB) fits in one core's L2 cache: with 1 MiB slots (a 4 MiB ring) the hasher read
evicted bytes and the pipeline cost 20-30% more CPU per GiB than hashing in line; with
256 KiB slots, 5-8% (measured here, 1 GiB from the page cache). Small files are hashed in
line: starting a thread costs more than it saves below PIPELINE_MIN.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable, Sequence

# 1 MiB reads into reused buffers: large enough that hashlib releases the GIL and runs at
# OpenSSL speed, small enough that the bytes are still in the CPU cache when hashed and
# written (measured on this project's 2-core test machine: read + hash + write to tmpfs
# ran at 930 MiB/s with 256 KiB and 1 MiB blocks, 470 MiB/s with 4 MiB ones).
BLOCK = 1024 * 1024
SLOT = 256 * 1024  # pipelined reads: the ring must stay in L2 (module docstring)
SLOTS = 4  # the reader can run up to 3 slots ahead of the hasher
PIPELINE_MIN = 8 * BLOCK  # below this, in line: thread start-up costs more than it saves


def advise_sequential(fd: int) -> None:
    """Ask for aggressive read-ahead (a USB stick or a disk, not the page cache, then)."""
    with contextlib.suppress(OSError):  # advice only: some filesystems refuse it
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def drop_cached(fd: int) -> None:
    """Drop a written, fsynced file's pages from the page cache: an export of 100 GiB
    then does not evict the machine's working set, and a verify run after it reads
    the media itself, not the pages the export left behind."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def stream(
    src: int,
    length: int,
    hashes: Sequence[hashlib._Hash],
    out: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Read up to `length` bytes from src's current position, feed each byte once to
    every hash in `hashes` (in order) and, if out is given, write it there. Returns the
    bytes read (less than length only at end of file)."""
    if length < PIPELINE_MIN:
        return _in_line(src, length, hashes, out, progress)
    size = SLOT
    ring = memoryview(bytearray(SLOTS * size))
    slots = [ring[i * size : (i + 1) * size] for i in range(SLOTS)]
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
    for i in range(SLOTS):
        free.put(i)
    failed: list[BaseException] = []

    def hasher() -> None:
        while (item := full.get()) is not None:
            slot, n = item
            try:
                if not failed:
                    for h in hashes:
                        h.update(slots[slot][:n])
            except BaseException as exc:  # handed to the reading thread, which raises it
                failed.append(exc)
            free.put(slot)

    worker = threading.Thread(target=hasher, name="gpuprov-hash", daemon=True)
    worker.start()
    done = 0
    try:
        while done < length and not failed:
            slot = free.get()
            view = slots[slot][: min(size, length - done)]
            n = os.readv(src, [view])
            if n == 0:
                free.put(slot)
                break
            full.put((slot, n))  # hashed there while written here: both only read the slot
            if out is not None:
                _write_all(out, view[:n])
            done += n
            if progress:
                progress(n)
    finally:
        full.put(None)
        worker.join()
    if failed:
        raise failed[0]
    return done


def _in_line(
    src: int,
    length: int,
    hashes: Sequence[hashlib._Hash],
    out: int | None,
    progress: Callable[[int], None] | None,
) -> int:
    view = memoryview(bytearray(min(BLOCK, max(length, 1))))
    done = 0
    while done < length:
        n = os.readv(src, [view[: min(len(view), length - done)]])
        if n == 0:
            break
        for h in hashes:
            h.update(view[:n])
        if out is not None:
            _write_all(out, view[:n])
        done += n
        if progress:
            progress(n)
    return done


def _write_all(out: int, data: memoryview) -> None:
    written = 0
    while written < len(data):
        written += os.write(out, data[written:])
