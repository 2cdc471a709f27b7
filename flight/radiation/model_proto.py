"""Just enough of the ONNX protobuf wire format to own a model's weights without the ``onnx`` package.

The board install carries onnxruntime but not ``onnx`` (the brief keeps ``onnx`` on the ground), yet
flightd must read each initializer's bytes to hold them in memory of its own, and the algorithm-based
checks add nodes, initializers and outputs to a graph. This module reads ``ModelProto.graph`` ->
``GraphProto.initializer`` / ``node`` / ``output`` and appends to a graph; everything else is carried
through byte for byte.

Field numbers are those of onnx/onnx.proto (ModelProto.graph = 7; GraphProto.node = 1, initializer = 5,
output = 12, sparse_initializer = 15; NodeProto.input = 1, output = 2, name = 3, op_type = 4, attribute = 5;
AttributeProto.name = 1, f = 2, i = 3, t = 5; TensorProto.dims = 1, data_type = 2, float_data = 4,
int32_data = 5, int64_data = 7, name = 8, raw_data = 9, double_data = 10, uint64_data = 11,
external_data = 13, data_location = 14; ValueInfoProto.name = 1). Wire format: protobuf encoding
(varint, 64-bit, length-delimited, 32-bit; packed and unpacked repeated scalars both accepted).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VARINT, I64, LEN, I32 = 0, 1, 2, 5

ONNX_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int16),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    12: np.dtype(np.uint32),
    13: np.dtype(np.uint64),
}
"""ONNX ``TensorProto.DataType`` -> numpy dtype (onnx.proto); strings, bfloat16 and float8 are not held."""


class ModelProtoError(ValueError):
    """Bytes that are not an ONNX model this reader can take apart; ``str()`` says where and why."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ModelProtoError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ModelProtoError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any, int, int]]:
    """(field number, wire type, value, start, end) of each field; LEN values are memoryviews."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        elif wire == I64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == LEN:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == I32:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ModelProtoError(f"unsupported wire type {wire} (field {number})")
        if pos > len(buf):
            raise ModelProtoError(f"field {number} runs past the end of its message")
        yield number, wire, value, start, pos


def _repeated_varints(wire: int, value: Any) -> list[int]:
    if wire == VARINT:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(item)
    return out


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class Initializer:
    """One graph initializer: ``name``, numpy ``dtype``, ``shape`` and its little-endian ``data`` bytes."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    data: bytes

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def array(self) -> np.ndarray[Any, Any]:
        """A read-only array over ``data`` (no copy)."""
        return np.frombuffer(self.data, dtype=self.dtype).reshape(self.shape)


@dataclass(frozen=True)
class Node:
    """A graph node: ``op_type``, ``inputs``, ``outputs``, its int/float attributes, and every attribute's
    encoded AttributeProto (``raw_attributes``, to copy the node)."""

    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, float | int] = field(default_factory=dict)
    has_tensor_attribute: bool = False
    raw_attributes: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class ModelGraph:
    """What flightd needs of a model's main graph (no subgraphs, no functions)."""

    initializers: list[Initializer]
    nodes: list[Node]
    outputs: list[str]
    sparse_initializers: int

    @property
    def constant_nodes(self) -> list[Node]:
        """Nodes that carry a tensor in an attribute (``Constant``): weights ONNX Runtime will own."""
        return [n for n in self.nodes if n.has_tensor_attribute]


def _tensor(buf: memoryview) -> Initializer:
    name, dtype_code = "", 0
    dims: list[int] = []
    raw: bytes | None = None
    typed: dict[int, list[Any]] = {}
    external = False
    for number, wire, value, _, _ in _fields(buf):
        if number == 1:
            dims.extend(_signed64(v) for v in _repeated_varints(wire, value))
        elif number == 2:
            dtype_code = value
        elif number == 8:
            name = bytes(value).decode("utf-8")
        elif number == 9:
            raw = bytes(value)
        elif number == 4:
            typed.setdefault(4, []).extend(struct.unpack(f"<{len(value) // 4}f", value) if wire == LEN else
                                           struct.unpack("<f", value))
        elif number == 10:
            typed.setdefault(10, []).extend(struct.unpack(f"<{len(value) // 8}d", value) if wire == LEN else
                                            struct.unpack("<d", value))
        elif number in (5, 7, 11):
            typed.setdefault(number, []).extend(_repeated_varints(wire, value))
        elif number == 13 or (number == 14 and value == 1):
            external = True
    if external:
        raise ModelProtoError(f"initializer {name!r} keeps its data in an external file (not supported onboard)")
    dtype = ONNX_DTYPES.get(dtype_code)
    if dtype is None:
        raise ModelProtoError(f"initializer {name!r} has ONNX data type {dtype_code}, which flightd does not hold")
    shape = tuple(dims)
    count = int(np.prod(shape, dtype=np.int64))
    if raw is None:
        raw = _typed_to_raw(name, dtype, dtype_code, typed, count)
    if len(raw) != count * dtype.itemsize:
        raise ModelProtoError(f"initializer {name!r}: {len(raw)} bytes for shape {shape} of {dtype}")
    return Initializer(name, dtype, shape, raw)


def _typed_to_raw(name: str, dtype: np.dtype[Any], code: int, typed: dict[int, list[Any]], count: int) -> bytes:
    if count == 0:
        return b""
    if code == 1:
        values: Any = typed.get(4, [])
    elif code == 11:
        values = typed.get(10, [])
    elif code in (7,):
        values = [_signed64(v) for v in typed.get(7, [])]
    elif code in (12, 13):
        values = typed.get(11, [])
    elif code == 10:  # float16 bit patterns travel in int32_data
        return np.asarray(typed.get(5, []), dtype=np.uint16).tobytes()
    else:  # int8/uint8/int16/uint16/int32/bool travel in int32_data
        values = [_signed64(v) & 0xFFFFFFFF for v in typed.get(5, [])]
        values = [v - (1 << 32) if v >= 1 << 31 else v for v in values]
    if len(values) != count:
        raise ModelProtoError(f"initializer {name!r}: {len(values)} values for {count} elements")
    return np.asarray(values).astype(dtype).tobytes()


def _attribute(buf: memoryview) -> tuple[str, float | int | None, bool]:
    name, value, tensor = "", None, False
    for number, _, raw, _, _ in _fields(buf):
        if number == 1:
            name = bytes(raw).decode("utf-8")
        elif number == 2:
            value = struct.unpack("<f", raw)[0]
        elif number == 3:
            value = _signed64(raw)
        elif number in (5, 11):  # t (TensorProto), sparse_tensor
            tensor = True
    return name, value, tensor


def _node(buf: memoryview) -> Node:
    inputs, outputs, name, op_type = [], [], "", ""
    attributes: dict[str, float | int] = {}
    raw_attributes: list[bytes] = []
    has_tensor = False
    for number, _, value, _, _ in _fields(buf):
        if number == 1:
            inputs.append(bytes(value).decode("utf-8"))
        elif number == 2:
            outputs.append(bytes(value).decode("utf-8"))
        elif number == 3:
            name = bytes(value).decode("utf-8")
        elif number == 4:
            op_type = bytes(value).decode("utf-8")
        elif number == 5:
            raw_attributes.append(bytes(value))
            attr_name, attr_value, tensor = _attribute(value)
            has_tensor |= tensor
            if attr_value is not None:
                attributes[attr_name] = attr_value
    return Node(op_type, name, tuple(inputs), tuple(outputs), attributes, has_tensor, tuple(raw_attributes))


def _graph_span(model: memoryview) -> tuple[memoryview, int, int]:
    found = None
    for number, wire, value, start, end in _fields(model):
        if number == 7 and wire == LEN:
            found = (value, start, end)
    if found is None:
        raise ModelProtoError("no graph in model (not an ONNX ModelProto?)")
    return found


def read_graph(model_bytes: bytes) -> ModelGraph:
    """Initializers, nodes and output names of the model's main graph; ModelProtoError if unreadable."""
    graph, _, _ = _graph_span(memoryview(model_bytes))
    initializers, nodes, outputs, sparse = [], [], [], 0
    for number, wire, value, _, _ in _fields(graph):
        if wire != LEN:
            continue
        if number == 5:
            initializers.append(_tensor(value))
        elif number == 1:
            nodes.append(_node(value))
        elif number == 12:
            for sub_number, _, sub_value, _, _ in _fields(value):
                if sub_number == 1:
                    outputs.append(bytes(sub_value).decode("utf-8"))
        elif number == 15:
            sparse += 1
    return ModelGraph(initializers, nodes, outputs, sparse)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _encode_len(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LEN) + _encode_varint(len(payload)) + payload


def _encode_varint_field(number: int, value: int) -> bytes:
    return _encode_varint(number << 3 | VARINT) + _encode_varint(value & ((1 << 64) - 1))


NUMPY_TO_ONNX = {dtype: code for code, dtype in ONNX_DTYPES.items()}


def encode_tensor(name: str, array: np.ndarray[Any, Any]) -> bytes:
    """A TensorProto holding ``array`` as raw little-endian data."""
    code = NUMPY_TO_ONNX[np.dtype(array.dtype)]
    dims = b"".join(_encode_varint_field(1, int(d)) for d in array.shape)
    return (dims + _encode_varint_field(2, code) + _encode_len(8, name.encode("utf-8"))
            + _encode_len(9, np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()))


def encode_ints_attribute(name: str, values: list[int]) -> bytes:
    """An AttributeProto of type INTS (type code 7)."""
    return (_encode_len(1, name.encode("utf-8")) + b"".join(_encode_varint_field(8, v) for v in values)
            + _encode_varint_field(20, 7))


def encode_int_attribute(name: str, value: int) -> bytes:
    """An AttributeProto of type INT (type code 2)."""
    return _encode_len(1, name.encode("utf-8")) + _encode_varint_field(3, value) + _encode_varint_field(20, 2)


def encode_node(op_type: str, inputs: list[str], outputs: list[str], attributes: tuple[bytes, ...] = ()) -> bytes:
    """A NodeProto (default domain) with encoded AttributeProtos ``attributes``."""
    return (b"".join(_encode_len(1, i.encode("utf-8")) for i in inputs)
            + b"".join(_encode_len(2, o.encode("utf-8")) for o in outputs)
            + _encode_len(4, op_type.encode("utf-8")) + b"".join(_encode_len(5, a) for a in attributes))


def extend_graph(
    model_bytes: bytes, nodes: Sequence[bytes] = (), initializers: Sequence[bytes] = (), outputs: Sequence[str] = ()
) -> bytes:
    """The model with encoded ``nodes`` and ``initializers`` appended to its graph, and ``outputs``
    (names of values) added as graph outputs whose types ONNX Runtime infers."""
    model = memoryview(model_bytes)
    graph, start, end = _graph_span(model)
    extra = (b"".join(_encode_len(1, n) for n in nodes) + b"".join(_encode_len(5, t) for t in initializers)
             + b"".join(_encode_len(12, _encode_len(1, n.encode("utf-8"))) for n in outputs))
    return bytes(model[:start]) + _encode_len(7, bytes(graph) + extra) + bytes(model[end:])


def with_graph_outputs(model_bytes: bytes, names: Sequence[str]) -> bytes:
    """The model with ``names`` (existing intermediate values) added as graph outputs (types inferred by ORT)."""
    return extend_graph(model_bytes, outputs=names)
