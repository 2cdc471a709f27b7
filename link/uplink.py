"""Model uplink messages: a model file sent to the satellite in chunks, resumable, verified onboard.

Ground -> satellite on ``models/upload/<upload_id>`` (QoS 1): :class:`UploadBegin` (the manifest the
finished file must match, chunking, optional HMAC tag), :class:`UploadChunk` (framed: the JSON header
names the chunk and its sha256, the binary section *is* the chunk's raw bytes, no base64) and
:class:`UploadQuery` (which chunks are still missing?). Satellite -> ground on
``models/upload/<upload_id>/progress`` (QoS 1): :class:`UploadProgress`.

Trust: the whole file must hash to ``manifest.sha256``, so a signed :class:`UploadBegin` authenticates
every byte; chunks and queries carry no tag. Chunk ``i`` covers bytes
``[i * chunk_bytes, min((i + 1) * chunk_bytes, size_bytes))``.

These models live here rather than in :mod:`link.messages` because they embed
:class:`link.manifest.ModelManifest`, and :mod:`link.manifest` imports :mod:`link.messages`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field, model_validator

from link.codec import Decoded, WireError, decode, encode, read_header
from link.manifest import ModelManifest
from link.messages import Auth, Identifier, TopicId, WireModel
from link.numbers import Count, UtcTime
from link.str_enum import StrEnum

SHA256_HEX = r"^[0-9a-f]{64}$"
MIN_CHUNK_BYTES = 1024
MAX_CHUNK_BYTES = 4 * 1024 * 1024
"""A chunk plus its header must fit flightd's ``link.max_payload_bytes`` (8 MiB by default)."""
DEFAULT_CHUNK_BYTES = 64 * 1024
MAX_MISSING_RANGES = 512
"""At most this many ranges in one :class:`UploadProgress`; the ground asks again after resending them."""


def chunk_count(size_bytes: int, chunk_bytes: int) -> int:
    """Number of chunks of ``chunk_bytes`` (the last one may be shorter) covering ``size_bytes``."""
    return -(-size_bytes // chunk_bytes)


def chunk_span(index: int, size_bytes: int, chunk_bytes: int) -> tuple[int, int]:
    """Byte range ``[start, stop)`` of chunk ``index``."""
    start = index * chunk_bytes
    return start, min(start + chunk_bytes, size_bytes)


def to_ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged half-open ranges ``[start, stop)`` covering exactly ``indices``."""
    ranges: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if ranges and ranges[-1][1] == i:
            ranges[-1] = (ranges[-1][0], i + 1)
        else:
            ranges.append((i, i + 1))
    return ranges


def from_ranges(ranges: Iterable[tuple[int, int]]) -> list[int]:
    """The sorted indices covered by half-open ``ranges``."""
    return sorted({i for start, stop in ranges for i in range(start, stop)})


class UploadBegin(WireModel):
    """Ground -> satellite: start (or, with the same manifest and chunking, resume) an upload.

    ``issued_utc`` and ``auth`` are checked like a command's when the satellite holds command keys.
    """

    kind: Literal["begin"] = "begin"
    upload_id: TopicId
    manifest: ModelManifest
    chunk_bytes: int = Field(ge=MIN_CHUNK_BYTES, le=MAX_CHUNK_BYTES)
    n_chunks: int = Field(ge=1)
    issued_utc: UtcTime | None = None
    auth: Auth | None = None

    @model_validator(mode="after")
    def _chunking_covers_file(self) -> UploadBegin:
        want = chunk_count(self.manifest.size_bytes, self.chunk_bytes)
        if self.manifest.size_bytes < 1:
            raise ValueError("an empty file cannot be a model")
        if self.n_chunks != want:
            raise ValueError(
                f"n_chunks {self.n_chunks} does not cover {self.manifest.size_bytes} bytes "
                f"in chunks of {self.chunk_bytes} (expected {want})"
            )
        return self

    def same_upload(self, other: UploadBegin) -> bool:
        """True when ``other`` describes the same file and chunking (issue time and tag may differ)."""
        return (self.upload_id, self.manifest, self.chunk_bytes, self.n_chunks) == (
            other.upload_id,
            other.manifest,
            other.chunk_bytes,
            other.n_chunks,
        )


class UploadChunk(WireModel):
    """Ground -> satellite, framed: chunk ``index``; the binary section holds its bytes, ``sha256`` their hash."""

    kind: Literal["chunk"] = "chunk"
    upload_id: TopicId
    index: Count
    sha256: str = Field(pattern=SHA256_HEX)


class UploadQuery(WireModel):
    """Ground -> satellite: reply with an :class:`UploadProgress` carrying the same ``query_id``."""

    kind: Literal["query"] = "query"
    upload_id: TopicId
    query_id: Identifier | None = None


class UploadState(StrEnum):
    """receiving -> verifying -> installed | rejected; ``unknown``: no such upload onboard (send a begin)."""

    RECEIVING = "receiving"
    VERIFYING = "verifying"
    INSTALLED = "installed"
    REJECTED = "rejected"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in (UploadState.INSTALLED, UploadState.REJECTED)


class UploadProgress(WireModel):
    """Satellite -> ground on ``models/upload/<upload_id>/progress``.

    ``missing`` lists half-open ranges ``[start, stop)`` of chunk indices not yet stored (at most
    :data:`MAX_MISSING_RANGES`; ``received + sum of range lengths < n_chunks`` means there are more).
    ``reason`` explains every rejection, and a chunk that was refused (bad hash or length).
    """

    upload_id: TopicId
    state: UploadState
    at_utc: UtcTime
    received: Count = 0
    n_chunks: Count = 0
    missing: list[tuple[int, int]] = Field(default_factory=list, max_length=MAX_MISSING_RANGES)
    name: Identifier | None = None
    version: Identifier | None = None
    reason: str | None = None
    query_id: Identifier | None = None


def chunk_message_bytes(upload_id: str, chunk_bytes: int) -> int:
    """Size in bytes of the framed :class:`UploadChunk` message carrying ``chunk_bytes`` bytes (the
    header at its longest: the largest index a 64-bit count allows)."""
    header = UploadChunk(upload_id=upload_id, index=2**63 - 1, sha256="0" * 64)
    return len(encode(header, b"\0")) - 1 + chunk_bytes


UploadMessage = UploadBegin | UploadChunk | UploadQuery
UPLOAD_MESSAGES: tuple[type[WireModel], ...] = (UploadBegin, UploadChunk, UploadQuery, UploadProgress)


def decode_upload(payload: bytes | memoryview) -> Decoded[UploadBegin] | Decoded[UploadChunk] | Decoded[UploadQuery]:
    """Decode a ground -> satellite upload message of any kind; :class:`WireError` with the reason otherwise."""
    kind = read_header(payload).get("kind")
    if kind == "chunk":
        return decode(payload, UploadChunk)
    if kind == "begin":
        return decode(payload, UploadBegin)
    if kind == "query":
        return decode(payload, UploadQuery)
    raise WireError(f"upload message kind {kind!r} is not one of begin, chunk, query")
