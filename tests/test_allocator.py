"""flight.allocator: glibc's mmap threshold pinned so that large freed payloads go back to the OS.
The effect is a figure of bench.fuzz --batch 0 (a flood); here only that the pin takes on glibc."""

from __future__ import annotations

import platform

import pytest

from flight.allocator import pin_mmap_threshold


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_MMAP_THRESHOLD) is glibc's")
def test_the_threshold_is_pinned_on_glibc() -> None:
    assert pin_mmap_threshold() is True
