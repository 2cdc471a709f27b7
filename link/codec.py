"""Bytes <-> messages. Two encodings of the same models, told apart by their first bytes:

- **framed** (default for messages with tensors): ``b"ORB1"``, header length as uint32 little-endian,
  the UTF-8 JSON header (the message, its tensors as ``offset``/``nbytes``), then the binary section
  holding the tensors' raw little-endian bytes. :func:`encode` pads the header with spaces so that
  the binary section starts :data:`ALIGN` (64) bytes into the frame times some whole number, and
  :func:`pack_tensors` starts every tensor at a multiple of :data:`ALIGN` in the binary section
  (zero bytes between). The layout is the one ORB1 always had (a JSON header may end in spaces,
  offsets may leave gaps), so older readers read these frames and this reader reads older frames;
  a tensor whose bytes are not aligned to its element size is copied (:mod:`link.tensor`).
- **JSON**: one UTF-8 JSON document; tensors carry their bytes in ``data_b64``. Any client that can
  write JSON (``mosquitto_pub -f job.json``) can speak it. A UTF-8 byte-order mark before the
  document (what some editors save) is skipped.

Decoding never raises anything but :class:`WireError`, whose message says what is wrong in words fit
for the wire and the log: an empty or blank payload is named as such, malformed JSON with its line
and column, a non-finite or out-of-range number with its field (:mod:`link.numbers`), a message
that does not validate with one ``field: problem`` per problem.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from link import SCHEMA_VERSION
from link.messages import WireModel, is_identifier
from link.numbers import first_bad_number
from link.tensor import ALIGN, Tensor, TensorError, dtype_name, inline_tensor, little_endian_bytes

MAGIC = b"ORB1"
_HEADER_LEN = struct.Struct("<I")
_PREFIX = len(MAGIC) + _HEADER_LEN.size
BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte-order mark, skipped before a JSON document."""
MAX_PROBLEMS = 8
"""At most this many validation problems are listed in one reason; the rest are counted."""

M = TypeVar("M", bound=WireModel)
Array = npt.NDArray[np.generic]


class WireError(ValueError):
    """A payload that cannot be decoded or validated; ``str()`` is the reason sent back to the ground."""


@dataclass(frozen=True)
class Decoded(Generic[M]):
    """A validated message and the binary section its framed tensors point into (empty for JSON)."""

    message: M
    binary: bytes | memoryview = b""


def describe_validation_error(exc: ValidationError) -> str:
    """One part per problem, ``field.path: what is wrong``, joined by ``; `` (at most
    :data:`MAX_PROBLEMS`, then how many more)."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:MAX_PROBLEMS]:
        loc = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{loc}: {err['msg']}")
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more problems")
    return "; ".join(parts)


def _split(payload: bytes | memoryview) -> tuple[bytes | memoryview, bytes | memoryview]:
    """(JSON header, binary section) of a payload in either encoding."""
    view = memoryview(payload)
    if len(view) == 0:
        raise WireError("empty payload (0 bytes): expected a JSON message or an ORB1 frame")
    if bytes(view[: len(MAGIC)]) == MAGIC:
        if len(view) < _PREFIX:
            raise WireError("framed payload is shorter than its 8-byte prefix")
        (n,) = _HEADER_LEN.unpack_from(view, len(MAGIC))
        if _PREFIX + n > len(view):
            raise WireError(f"framed header claims {n} bytes but only {len(view) - _PREFIX} follow")
        return view[_PREFIX : _PREFIX + n], view[_PREFIX + n :]
    return view, b""


def _load_json(header: bytes | memoryview) -> object:
    """The JSON document in ``header`` (a leading BOM skipped); WireError naming what is wrong."""
    raw = bytes(header)
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("payload is neither framed (ORB1) nor UTF-8 JSON") from None
    if not text.strip():
        raise WireError(f"blank payload: {len(header)} bytes of white space and no JSON message")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise WireError("malformed JSON: nested too deeply") from None
    except ValueError:  # an integer literal longer than Python's int_max_str_digits (4300)
        raise WireError("malformed JSON: a number has too many digits") from None


def _load_object(header: bytes | memoryview) -> dict[str, object]:
    doc = _load_json(header)
    if not isinstance(doc, dict):
        raise WireError(f"expected a JSON object, got {type(doc).__name__}")
    return doc


def read_header(payload: bytes | memoryview) -> dict[str, object]:
    """The JSON header of a payload in either encoding, as a dict, not validated (numbers may be
    non-finite); :class:`WireError` when it is empty, not JSON or not an object."""
    return _load_object(_split(payload)[0])


def decode(payload: bytes | memoryview, cls: type[M]) -> Decoded[M]:
    """Decode and validate ``payload`` as ``cls``; :class:`WireError` with a clear reason otherwise."""
    header, binary = _split(payload)
    doc = _load_object(header)
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise WireError(
            f"unsupported schema_version {version!r}: this build speaks schema_version {SCHEMA_VERSION}"
        )
    bad = first_bad_number(doc)
    if bad is not None:
        raise WireError(f"invalid {cls.__name__}: {bad[0]}: {bad[1]}")
    try:
        message = cls.model_validate(doc)
    except ValidationError as exc:
        raise WireError(f"invalid {cls.__name__}: {describe_validation_error(exc)}") from None
    return Decoded(message, binary)


def peek_field(payload: bytes | memoryview, field: str) -> str | None:
    """Best-effort: the identifier in ``field`` of a payload that may fail validation, so that a
    rejection can name the job or command it is about (on its topic). None when it cannot be read or
    is no valid topic level (:data:`link.messages.TOPIC_ID_PATTERN`)."""
    try:
        doc = read_header(payload)
    except WireError:
        return None
    value = doc.get(field) if isinstance(doc, dict) else None
    if isinstance(value, str) and is_identifier(value):
        return value
    return None


def peek_header(payload: bytes | memoryview) -> dict[str, object] | None:
    """Best-effort: the JSON header of a payload in either encoding as a dict, unvalidated (for
    archiving and inspection: times, ids; numbers may be non-finite). None when it is not a JSON object."""
    try:
        return read_header(payload)
    except WireError:
        return None


def encode(message: WireModel, binary: bytes = b"") -> bytes:
    """Serialise ``message``: framed when it has a binary section, plain JSON otherwise. A framed
    header is padded with spaces so that the binary section starts at a multiple of :data:`ALIGN`."""
    header = message.model_dump_json(exclude_none=True).encode()
    if not binary:
        return header
    header += b" " * (-(_PREFIX + len(header)) % ALIGN)
    return MAGIC + _HEADER_LEN.pack(len(header)) + header + binary


def pack_tensors(arrays: dict[str, Array], *, framed: bool = True) -> tuple[dict[str, Tensor], bytes]:
    """Descriptors for ``arrays`` and the binary section they point into (empty when not framed);
    each tensor starts at a multiple of :data:`ALIGN`, zero bytes filling the gaps."""
    if not framed:
        return {name: inline_tensor(a) for name, a in arrays.items()}, b""
    tensors: dict[str, Tensor] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, array in arrays.items():
        gap = -offset % ALIGN
        if gap:
            chunks.append(bytes(gap))
            offset += gap
        raw = little_endian_bytes(array)
        tensors[name] = Tensor(
            dtype=dtype_name(array),
            shape=list(array.shape),
            offset=offset,
            nbytes=len(raw),
        )
        chunks.append(raw)
        offset += len(raw)
    return tensors, b"".join(chunks)


def unpack_tensors(tensors: dict[str, Tensor], binary: bytes | memoryview = b"") -> dict[str, Array]:
    """Arrays of ``tensors``; :class:`WireError` naming the tensor when one does not decode."""
    out: dict[str, Array] = {}
    for name, tensor in tensors.items():
        try:
            out[name] = tensor.to_array(binary)
        except TensorError as exc:
            raise WireError(f"tensor {name!r}: {exc}") from None
    return out
