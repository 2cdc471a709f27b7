"""link.digest: one sha256 of a file, the same with hashlib.file_digest and with the 3.10 fallback."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from link.digest import CHUNK_BYTES, sha256_chunked, sha256_file


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, 2 * CHUNK_BYTES + 17])
def test_file_digest_and_fallback_agree_with_hashing_the_bytes(tmp_path: Path, size: int) -> None:
    path = tmp_path / "blob.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == want
    assert sha256_file(str(path)) == want
    with path.open("rb") as f:
        assert sha256_chunked(f) == want


def test_the_empty_file_has_the_well_known_digest(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_fallback_is_used_without_file_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.10 has no hashlib.file_digest: the chunked reader gives the same digest."""
    path = tmp_path / "blob.bin"
    path.write_bytes(b"orbitd" * 500_000)
    want = sha256_file(path)
    monkeypatch.delattr(hashlib, "file_digest", raising=False)
    assert not hasattr(hashlib, "file_digest")
    assert sha256_file(path) == want == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        sha256_file(tmp_path / "absent.onnx")
