"""Reading sysfs and procfs files under a filesystem root, without ever raising.

Every board reader takes ``root`` (a :class:`~pathlib.Path`, ``/`` on the board) and joins the
documented absolute paths onto it, so a test can lay out a directory tree as on the real board and
read it with the same code. A value that cannot be read (file missing, permission denied, an I/O
error from the driver such as ``EIO``/``ENODATA`` on a sensor that is off, or text that is not a
number) reads as ``None``; :func:`why_unreadable` says why, for the start-up report.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

ROOT = Path("/")


def under(root: Path, absolute: str) -> Path:
    """``absolute`` (a path as documented on the board, e.g. ``/sys/class/thermal``) under ``root``."""
    return root / absolute.lstrip("/")


def read_text(path: Path) -> str | None:
    """The file's text with surrounding whitespace and NULs stripped; None when it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace").strip().strip("\x00").strip()
    except OSError:
        return None


def read_int(path: Path, base: int = 10) -> int | None:
    """The file's integer value (``base`` 16 accepts an optional ``0x``); None when unreadable."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def why_unreadable(path: Path) -> str | None:
    """None when ``path`` reads, else a short reason ("missing", "permission denied", ...)."""
    try:
        path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno is not None else str(exc)
    return None


def write_text(path: Path, text: str) -> str | None:
    """Write ``text`` to a sysfs attribute; None on success, else why not (never raises).

    The reasons name the usual causes on a board: not root (``EACCES``/``EPERM``), a read-only
    mount (``EROFS``: systemd's ``ProtectKernelTunables=`` or ``ProtectSystem=strict``), a
    missing attribute (no such driver) and a value the driver refused (``EINVAL``).
    """
    try:
        with path.open("w") as f:
            f.write(text)
    except FileNotFoundError:
        return f"{path} does not exist"
    except PermissionError:
        return f"permission denied writing {path} (flightd is not root and the file is not writable by its user)"
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return f"{path} is on a read-only file system (ProtectKernelTunables=/ProtectSystem= in the unit?)"
        if exc.errno == errno.EINVAL:
            return f"the kernel refused {text!r} for {path} (invalid argument)"
        return f"writing {path} failed: {os.strerror(exc.errno) if exc.errno else exc}"
    return None


def numbered(directory: Path, prefix: str) -> list[Path]:
    """Entries of ``directory`` named ``prefix`` + a number, in numeric order (zone10 after zone9)."""
    try:
        entries = [p for p in directory.iterdir() if p.name.startswith(prefix) and p.name[len(prefix):].isdigit()]
    except OSError:
        return []
    return sorted(entries, key=lambda p: int(p.name[len(prefix):]))
