"""Tensors on the wire: dtype + shape + raw little-endian bytes.

A tensor travels as a :class:`Tensor` descriptor. In the framed encoding (:mod:`link.codec`) the bytes
follow the JSON header and the descriptor carries ``offset``/``nbytes`` into that binary section; in
the plain-JSON encoding the descriptor carries the bytes in ``data_b64``. Both decode to the same
numpy array. Measured on the development machine (bench.tensor_encoding), a 3x128x128 float32
tensor decodes in about 9 us framed against about 400 us as JSON + base64, which is why the
framed form is the default and JSON is kept for hand-written clients (mosquitto_pub). Decoded
arrays are always aligned to their element size (:data:`ALIGN`, :func:`aligned_copy`).
"""

from __future__ import annotations

import base64
import math
from typing import Annotated, Literal, cast

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from link.numbers import Count, LinkModel

DType = Literal["float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"]
SUPPORTED_DTYPES: tuple[str, ...] = DType.__args__  # type: ignore[attr-defined]

MAX_RANK = 8
ALIGN = 64
"""Alignment, bytes, of a framed message's binary section and of every tensor in it, counted from the
frame's start (:mod:`link.codec`), and of the copy :meth:`Tensor.to_array` makes of bytes that are
not aligned to their element size. 64 bytes is a cache line and more than any element size, so
tensors of a padded frame are naturally aligned wherever the frame's buffer is 8-byte aligned
(Python's bytes objects are 16-byte aligned)."""
Dim = Annotated[int, Field(ge=0, le=1 << 31)]


class TensorError(ValueError):
    """A tensor descriptor and its bytes do not agree (size, dtype, offsets)."""


class Tensor(LinkModel):
    """One tensor: ``dtype``, ``shape`` and its bytes, either inline (``data_b64``) or by reference
    (``offset`` and ``nbytes`` into the binary section of a framed message). Exactly one form is set.
    """

    dtype: DType
    shape: list[Dim] = Field(max_length=MAX_RANK)
    data_b64: str | None = None
    offset: Count | None = None
    nbytes: Count | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Tensor:
        inline = self.data_b64 is not None
        framed = self.offset is not None or self.nbytes is not None
        if inline == framed:
            raise ValueError("a tensor carries either data_b64 or offset+nbytes, not both or neither")
        if framed and (self.offset is None or self.nbytes is None):
            raise ValueError("a framed tensor needs both offset and nbytes")
        return self

    @property
    def expected_nbytes(self) -> int:
        """Size in bytes that ``dtype`` and ``shape`` imply."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize  # Python ints: no int64 wrap-around

    def to_array(self, binary: bytes | memoryview = b"") -> npt.NDArray[np.generic]:
        """Decode to a numpy array (native byte order), aligned to its element size. ``binary`` is the
        framed message's tail: the array is a view into it, or a copy (:func:`aligned_copy`) when the
        bytes are not aligned (a frame written without padding) or not in native byte order."""
        if self.data_b64 is not None:
            try:
                raw: bytes | memoryview = base64.b64decode(self.data_b64, validate=True)
            except ValueError as exc:
                raise TensorError(f"data_b64 is not valid base64: {exc}") from None
        else:
            assert self.offset is not None and self.nbytes is not None
            end = self.offset + self.nbytes
            if end > len(binary):
                raise TensorError(
                    f"tensor bytes [{self.offset}, {end}) run past the binary section ({len(binary)} bytes)"
                )
            raw = memoryview(binary)[self.offset : end]
        if len(raw) != self.expected_nbytes:
            raise TensorError(
                f"{self.dtype}{self.shape} needs {self.expected_nbytes} bytes, got {len(raw)}"
            )
        dt = np.dtype(self.dtype).newbyteorder("<")
        array = np.frombuffer(raw, dtype=dt).reshape(self.shape).astype(dt.newbyteorder("="), copy=False)
        return array if array.flags.aligned else aligned_copy(array)


def aligned_copy(array: npt.NDArray[np.generic], align: int = ALIGN) -> npt.NDArray[np.generic]:
    """A C-contiguous copy of ``array`` whose data starts at an address that is a multiple of ``align``."""
    buffer = np.empty(array.nbytes + align, dtype=np.uint8)
    start = -buffer.ctypes.data % align
    out = buffer[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


def dtype_name(array: npt.NDArray[np.generic]) -> DType:
    """The wire name of ``array``'s dtype, or :class:`TensorError` if the link cannot carry it."""
    name: str = np.dtype(array.dtype).name
    if name not in SUPPORTED_DTYPES:
        raise TensorError(f"dtype {name} is not carried by the link (supported: {', '.join(SUPPORTED_DTYPES)})")
    return cast("DType", name)


def little_endian_bytes(array: npt.NDArray[np.generic]) -> bytes:
    """``array``'s elements as C-ordered little-endian bytes."""
    le = np.ascontiguousarray(array, dtype=np.dtype(array.dtype).newbyteorder("<"))
    return le.tobytes()


def inline_tensor(array: npt.NDArray[np.generic]) -> Tensor:
    """A self-contained descriptor with the bytes in ``data_b64`` (plain-JSON encoding)."""
    return Tensor(
        dtype=dtype_name(array),
        shape=list(array.shape),
        data_b64=base64.b64encode(little_endian_bytes(array)).decode("ascii"),
    )
