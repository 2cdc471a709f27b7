"""Real storage faults for tests: a size-limited tmpfs to fill, an ext4 file system on a loop device to
turn read-only or to shut down (every I/O then fails with EIO), as the kernel does on a failing disk.

Mounting needs root (CAP_SYS_ADMIN); without it these tests are skipped with the reason. Nothing here
mocks the disk: SQLite meets ENOSPC, EROFS and EIO from the kernel.

- :class:`Tmpfs`: ``fill()`` writes a file until the kernel says ENOSPC; ``free()`` deletes it.
- :class:`LoopExt4`: mounted with ``errors=remount-ro``; ``make_read_only()`` raises a file-system
  error through ext4's ``trigger_fs_error`` (the kernel remounts it read-only at once, as it does on a
  metadata error of an SD card); ``shut_down()`` is ``EXT4_IOC_SHUTDOWN`` (xfstests' "godown"): every
  read and write of it fails with EIO from then on. ``remount()`` recovers as an operator would: the
  dead mount detached (lazily: flightd still holds files on it), the image checked with e2fsck and
  mounted again at the same path, through a new loop device, a new file system instance.
- :func:`corrupt_page`: bytes of a journal page overwritten, as a failing flash page would leave them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import struct
import subprocess
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; these tests also run on the board's 3.10 (annotations only)

EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32), linux/fs/ext4/ext4.h
EXT4_GOING_FLAGS_NOLOGFLUSH = 2  # stop at once, without flushing the journal: every I/O fails with EIO


def need_root() -> None:
    """Skip the calling test unless it may mount file systems."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a test file system (tmpfs, loop-mounted ext4)")


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def unmount(path: Path) -> None:
    """Unmount ``path``; lazily when a process still holds files there."""
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


class Tmpfs:
    """A tmpfs of ``size_bytes`` mounted at ``path`` (``with Tmpfs(path, 8 << 20) as fs:``)."""

    def __init__(self, path: Path, size_bytes: int, read_only: bool = False) -> None:
        self.path = Path(path)
        self.size_bytes = size_bytes
        self.read_only = read_only
        self.filler = self.path / "filler"

    def __enter__(self) -> Self:
        need_root()
        self.path.mkdir(parents=True, exist_ok=True)
        options = f"size={self.size_bytes}" + (",ro" if self.read_only else "")
        run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path))
        return self

    def free_bytes(self) -> int:
        fs = os.statvfs(self.path)
        return fs.f_bavail * fs.f_frsize

    def fill(self) -> None:
        """Write ``filler`` until the file system is full (the kernel answers ENOSPC)."""
        block = b"\xa5" * 65536
        with self.filler.open("ab") as f:
            try:
                while True:
                    f.write(block)
                    f.flush()
            except OSError as exc:
                if exc.errno != 28:
                    raise
        # what a page-sized write left: fill it byte by byte so that nothing at all is free
        with self.filler.open("ab", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\xa5" * 512)
        assert self.free_bytes() == 0, self.free_bytes()

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        unmount(self.path)


class LoopExt4:
    """ext4 (``errors=remount-ro``) in ``image`` (``size_bytes``) on a loop device, mounted at ``path``."""

    def __init__(self, image: Path, path: Path, size_bytes: int = 64 << 20) -> None:
        self.image = Path(image)
        self.path = Path(path)
        self.size_bytes = size_bytes
        self.devices: list[str] = []

    def __enter__(self) -> Self:
        need_root()
        if not Path("/dev/loop-control").exists():
            pytest.skip("no loop devices here (/dev/loop-control)")
        self.path.mkdir(parents=True, exist_ok=True)
        with self.image.open("wb") as f:
            f.truncate(self.size_bytes)
        run("mkfs.ext4", "-q", "-F", str(self.image))
        self._mount()
        return self

    def _mount(self) -> None:
        device = run("losetup", "-f", "--show", str(self.image))
        self.devices.append(device)
        subprocess.run(["e2fsck", "-fy", device], capture_output=True, check=False)  # 1: errors corrected
        run("mount", "-o", "errors=remount-ro", device, str(self.path))

    @property
    def device(self) -> str:
        return self.devices[-1]

    def make_read_only(self) -> None:
        """A file-system error: the kernel remounts it read-only (EROFS for every write from now)."""
        sysfs = Path("/sys/fs/ext4") / Path(self.device).name / "trigger_fs_error"
        sysfs.write_text("orbitd storage-fault test\n")
        options = run("findmnt", "-n", "-o", "OPTIONS", str(self.path))
        assert options.startswith("ro") or "emergency_ro" in options, options

    def shut_down(self) -> None:
        """EXT4_IOC_SHUTDOWN: from now every I/O on this file system fails with EIO."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(fd)

    def remount(self) -> None:
        """Detach the failed mount and mount the checked image again at the same path."""
        self.detach()
        self._mount()

    def detach(self) -> None:
        """Unmount it (lazily: files open on it stay usable); ``path`` is an empty directory again."""
        unmount(self.path)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        unmount(self.path)
        for device in self.devices:  # a device still held by a lazily detached mount is freed at its last close
            subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def corrupt_page(path: Path, page: int, page_size: int = 65536) -> None:
    """Overwrite the b-tree header of ``page`` (1-based) with 0xff bytes."""
    with path.open("r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(b"\xff" * 64)


def root_page(path: Path, table: str) -> int:
    """The page number of ``table``'s b-tree root in the SQLite file at ``path``."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0])
