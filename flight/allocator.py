"""The C allocator's part in flightd's memory: large inbound payloads go back to the OS when freed.

glibc serves an allocation of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) with its own
``mmap`` and unmaps it on free. But the threshold is dynamic: freeing such a block raises it to that
block's size (up to 32 MiB on 64-bit), after which blocks of that size come from the heap, where
small long-lived objects allocated between them keep the heap from shrinking (mallopt(3), "M_MMAP_
THRESHOLD": "the threshold is adjusted upward to the size of the freed chunk"). A flood of ~200 KB
payloads (bench.fuzz, unpaced: deeply nested JSON on every topic) left flightd's resident memory
78-95 MB higher after the backlog drained although Python held no more than before (tracemalloc);
with the threshold pinned at :data:`MMAP_THRESHOLD_BYTES` the same flood leaves 8 MB.

Setting the threshold explicitly turns the dynamic adjustment off (mallopt(3)). Elsewhere (musl,
macOS) :func:`pin_mmap_threshold` does nothing.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("flightd")

M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter number (malloc.h)."""
MMAP_THRESHOLD_BYTES = 64 * 1024
"""Allocations this large and larger are mmapped and unmapped on free: half glibc's initial 128 KiB,
so that a 64-KiB upload chunk's buffers, the largest payloads flightd receives often, go back too."""


def pin_mmap_threshold(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold_bytes``; True when done, False where the C library is
    not glibc (or refuses)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: libc's on Linux
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes) == 1)
    log.debug("glibc mmap threshold %s at %d bytes", "pinned" if done else "not pinned", threshold_bytes)
    return done
