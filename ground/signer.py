"""The ground's Ed25519 signing keys and their sequence counters (the satellite side is flight.keyring).

A key is three files in one directory, named after the key:

- ``NAME.key``: the private key, PKCS#8 PEM, mode 0600. It never leaves the ground.
- ``NAME.pub``: the raw public key as 64 hex digits (what the satellite's key ring holds).
- ``NAME.seq``: the last sequence number used with this key (link.envelope's anti-replay counter).

The counter is shared by every process signing with the key on this machine: each
:meth:`SequenceCounter.next` takes an exclusive ``flock`` on the file, reads, increments and writes
it, so two ``ground`` commands never use one number twice (the page cache is coherent between
processes). The file is fsynced at most once a second per process (``fsync_every_s``): an fsync
per message cost about 0.8 ms on the development machine, more than the rest of signing and
checking together (bench.auth). The price is paid only if the ground machine loses power: numbers
used in the last second before the cut may be handed out again, and the satellite refuses those as
replays (it never accepts a number twice) until the counter has passed them. A missing or
unreadable counter file is re-seeded from the clock in microseconds: far above any counter that was
seeded the same way and then incremented by one per message (that would take a million messages a
second), so losing the file never makes the satellite refuse the key.
"""

from __future__ import annotations

import fcntl
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from link.envelope import MAX_SEQUENCE, fingerprint, load_public_key, public_bytes, seal
from link.topics import check_id


class KeyFileError(ValueError):
    """A key file that is missing, unreadable, of the wrong kind, or readable by others."""


def _clock_us() -> int:
    return time.time_ns() // 1000


@dataclass
class SequenceCounter:
    """The next anti-replay sequence number of one key, persisted in ``path`` (see the module docstring).

    The file holds the last number used, 20 digits, rewritten in place (no truncation: an
    ftruncate cost about 90 µs on the development machine). The descriptor stays open between calls
    and is reopened when the file was replaced or deleted (a re-seed by hand).
    """

    path: Path
    clock_us: Callable[[], int] = field(default=_clock_us)
    fsync_every_s: float = 1.0
    _synced: float = field(default=-math.inf, repr=False)
    _fd: int | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _descriptor(self) -> int:
        if self._fd is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    return self._fd
            except FileNotFoundError:
                pass
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def next(self) -> int:
        """Reserve and return the next number (>= 1); :class:`KeyFileError` when the counter is exhausted.
        Threads of this process take ``_lock`` (a ``flock`` on a shared descriptor does not exclude
        them), other processes the ``flock``."""
        with self._lock:
            return self._next()

    def _next(self) -> int:
        fd = self._descriptor()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            last = int(text) if text.isdigit() else None
            number = last + 1 if last is not None else max(self.clock_us(), 1)
            if number > MAX_SEQUENCE:
                raise KeyFileError(f"sequence counter {self.path} is exhausted: rotate the key")
            os.pwrite(fd, f"{number:020d}\n".encode(), 0)
            now = time.monotonic()
            if last is None or now - self._synced >= self.fsync_every_s:
                os.fsync(fd)  # a re-seeded counter always reaches the disk
                self._synced = now
            return number
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass
class Signer:
    """A private key with its name and counter: :meth:`seal` wraps an encoded message for a satellite."""

    name: str
    private_key: Ed25519PrivateKey
    counter: SequenceCounter

    @property
    def public_key(self) -> bytes:
        return public_bytes(self.private_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def seal(self, body: bytes, sat: str) -> bytes:
        """``body`` in a signed ``ORS1`` envelope for satellite ``sat`` under the next sequence number."""
        return seal(body, self.private_key, sat, self.counter.next())


def key_paths(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """(private key, public key, counter) file paths of key ``name`` in ``directory``."""
    check_id("key name", name)
    return directory / f"{name}.key", directory / f"{name}.pub", directory / f"{name}.seq"


def generate_key(directory: Path, name: str) -> Signer:
    """Make key ``name`` in ``directory`` (created 0700); :class:`KeyFileError` if it exists already."""
    private_path, public_path, counter_path = key_paths(directory, name)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{private_path} exists: refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_text(public_bytes(key).hex() + "\n")
    return Signer(name, key, SequenceCounter(counter_path))


def load_signer(private_path: Path) -> Signer:
    """The signer whose private key is ``private_path`` (``NAME.key``; the counter is ``NAME.seq`` beside it)."""
    if not private_path.is_file():
        raise KeyFileError(f"signing key {private_path} does not exist (make one with `ground keys new`)")
    if private_path.stat().st_mode & 0o077:
        raise KeyFileError(f"signing key {private_path} is readable by others: chmod 600 it")
    try:
        key = load_pem_private_key(private_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{private_path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{private_path} holds a {type(key).__name__}, not an Ed25519 key")
    name = private_path.stem
    return Signer(name, key, SequenceCounter(private_path.with_suffix(".seq")))


def read_public_key(public_path: Path) -> bytes:
    """The raw public key in a ``NAME.pub`` file."""
    try:
        return load_public_key(public_path.read_text())
    except OSError as exc:
        raise KeyFileError(f"cannot read {public_path}: {exc.strerror}") from None
