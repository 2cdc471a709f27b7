"""Durable file writes onboard: a file replaced in one step, and a directory entry made to last.

A power cut (not only a crash) must leave either the old or the new content, never a torn file: the
new text goes to ``<name>.tmp``, is fsynced, then renamed over ``<name>`` (``os.replace`` is atomic
on POSIX). A rename or a new file is durable only once its directory is fsynced (:func:`fsync_dir`).
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush the directory ``path`` (its entries: renames, new and deleted files) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush the contents of the file at ``path`` to the disk."""
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one step, the new content fsynced before the rename."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
