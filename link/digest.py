"""The sha256 of a file, as a model manifest records it (one helper for flight and ground).

``sha256_file(path)`` returns the lower-case hex digest that ``sha256sum`` prints and that
:attr:`link.manifest.ModelManifest.sha256` holds. Python 3.11+ hashes with ``hashlib.file_digest``
(which reads the file in large blocks, releasing the GIL); Python 3.10 (the board install, JetPack 6)
reads it in :data:`CHUNK_BYTES` blocks. Both give the same digest and never hold the whole file in
memory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 20
"""Block size of the Python 3.10 fallback: 1 MiB, large enough that hashing, not the read calls, costs."""


def sha256_chunked(f: BinaryIO) -> str:
    """Hex sha256 of what remains to be read from ``f``, read in :data:`CHUNK_BYTES` blocks."""
    digest = hashlib.sha256()
    while block := f.read(CHUNK_BYTES):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path | str) -> str:
    """Lower-case hex sha256 of the file at ``path``; OSError if it cannot be read."""
    with Path(path).open("rb") as f:
        file_digest = getattr(hashlib, "file_digest", None)  # Python >= 3.11
        if file_digest is None:
            return sha256_chunked(f)
        return str(file_digest(f, "sha256").hexdigest())
