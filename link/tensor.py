"""Tensors on the wire: dtype + shape + raw little-endian bytes.

A tensor travels as a :class:`Tensor` descriptor. In the framed encoding (:mod:`link.codec`) the bytes
follow the JSON header and the descriptor carries ``offset``/``nbytes`` into that binary section; in
the plain-JSON encoding the descriptor carries the bytes in ``data_b64``. Both decode to the same
numpy array. Measured on the development machine (bench.tensor_encoding), a 3x128x128 float32
tensor decodes in about 3 us framed against about 450 us as JSON + base64, which is why the
framed form is the default and JSON is kept for hand-written clients (mosquitto_pub).
"""

from __future__ import annotations

import base64
import math
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

DType = Literal["float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"]
SUPPORTED_DTYPES: tuple[str, ...] = DType.__args__  # type: ignore[attr-defined]

MAX_RANK = 8
Dim = Annotated[int, Field(ge=0, le=1 << 31)]


class TensorError(ValueError):
    """A tensor descriptor and its bytes do not agree (size, dtype, offsets)."""


class Tensor(BaseModel):
    """One tensor: ``dtype``, ``shape`` and its bytes, either inline (``data_b64``) or by reference
    (``offset`` and ``nbytes`` into the binary section of a framed message). Exactly one form is set.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: DType
    shape: list[Dim] = Field(max_length=MAX_RANK)
    data_b64: str | None = None
    offset: int | None = Field(default=None, ge=0)
    nbytes: int | None = Field(default=None, ge=0)

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
        """Decode to a numpy array (native byte order). ``binary`` is the framed message's tail."""
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
        return np.frombuffer(raw, dtype=dt).reshape(self.shape).astype(dt.newbyteorder("="), copy=False)


def dtype_name(array: npt.NDArray[np.generic]) -> DType:
    """The wire name of ``array``'s dtype, or :class:`TensorError` if the link cannot carry it."""
    name = np.dtype(array.dtype).name
    if name not in SUPPORTED_DTYPES:
        raise TensorError(f"dtype {name} is not carried by the link (supported: {', '.join(SUPPORTED_DTYPES)})")
    return name  # type: ignore[return-value]


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
