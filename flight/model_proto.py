"""Just enough of the ONNX protobuf wire format to check and own a model without the ``onnx`` package.

The board install carries onnxruntime but not ``onnx`` (the brief keeps ``onnx`` on the ground), yet
flightd must look inside model files in two places:

- the model registry checks every file before ONNX Runtime opens it (:mod:`flight.model_intake`):
  :func:`read_outline` walks the whole model (graph, subgraphs in attributes, model-local functions,
  training graphs) into a :class:`ModelOutline`: IR version, opsets, declared inputs and outputs, the
  operators used, every tensor that keeps its data in an external file, every tensor whose data cannot
  fit its shape;
- the radiation work holds each initializer's bytes in memory of its own (:func:`read_graph`) and the
  algorithm-based checks add nodes, initializers and outputs to a graph (:func:`extend_graph`);
  everything else is carried through byte for byte.

Field numbers are those of onnx/onnx.proto (onnx 1.20): ModelProto ir_version = 1, graph = 7,
opset_import = 8, training_info = 20, functions = 25; GraphProto node = 1, name = 2, initializer = 5,
input = 11, output = 12, sparse_initializer = 15; NodeProto input = 1, output = 2, name = 3, op_type = 4,
attribute = 5, domain = 7; AttributeProto name = 1, f = 2, i = 3, t = 5, g = 6, tensors = 10, graphs = 11,
type = 20, sparse_tensor = 22, sparse_tensors = 23; TensorProto dims = 1, data_type = 2, float_data = 4,
int32_data = 5, string_data = 6, int64_data = 7, name = 8, raw_data = 9, double_data = 10,
uint64_data = 11, external_data = 13, data_location = 14; SparseTensorProto values = 1, indices = 2,
dims = 3; ValueInfoProto name = 1, type = 2; TypeProto tensor_type = 1, sequence_type = 4, map_type = 5,
opaque_type = 7, sparse_tensor_type = 8, optional_type = 9; TypeProto.Tensor elem_type = 1, shape = 2;
TensorShapeProto dim = 1; Dimension dim_value = 1, dim_param = 2; OperatorSetIdProto domain = 1,
version = 2; FunctionProto name = 1, node = 7, opset_import = 9, domain = 10; TrainingInfoProto
initialization = 1, algorithm = 2; StringStringEntryProto key = 1, value = 2. Wire format: protobuf
encoding (varint, 64-bit, length-delimited, 32-bit; packed and unpacked repeated scalars both accepted).
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


class GraphTooDeep(ModelProtoError):
    """A model whose subgraphs nest deeper than the reader's limit (:data:`MAX_GRAPH_DEPTH` or less)."""


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


ONNX_TYPE_NAMES: dict[int, str] = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string", 9: "bool",
    10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16",
    17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4",
    23: "float4e2m1", 24: "float8e8m0", 25: "uint2", 26: "int2",
}
"""ONNX ``TensorProto.DataType`` code -> name (onnx.proto, onnx 1.20); the names of the numeric types are numpy's."""

_ELEMENT_BITS: dict[int, int] = {
    1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64, 15: 128,
    16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2,
}
"""Bits per element in ``raw_data`` (onnx.proto; 4- and 2-bit types are packed, the last byte padded)."""

_TYPED_FIELD: dict[int, tuple[int, int]] = {
    1: (4, 1), 14: (4, 2), 11: (10, 1), 15: (10, 2), 7: (7, 1), 12: (11, 1), 13: (11, 1), 8: (6, 1),
    **{code: (5, 1) for code in (2, 3, 4, 5, 6, 9, 10, 16, 17, 18, 19, 20, 24)},
}
"""Data type -> (TensorProto field that holds its values when there is no ``raw_data``, values per element)."""


@dataclass(frozen=True)
class TensorFields:
    """One TensorProto as it is on the wire: ``dims``, ``data_type`` code, ``name``, ``raw`` data (None: absent),
    the typed value fields by number (each a list of (wire type, value)), and where it keeps external data."""

    name: str
    data_type: int
    dims: tuple[int, ...]
    raw: memoryview | None
    typed: dict[int, list[tuple[int, Any]]]
    external: bool
    location: str | None

    @property
    def count(self) -> int:
        """Number of elements (the product of ``dims``; 1 for a scalar)."""
        return int(np.prod(self.dims, dtype=np.float64)) if self.dims else 1

    def typed_count(self, number: int) -> int:
        """How many values field ``number`` holds (packed and unpacked forms both counted)."""
        total = 0
        for wire, value in self.typed.get(number, []):
            if wire == LEN and number in (4, 10):
                total += len(value) // (4 if number == 4 else 8)
            elif wire == LEN and number != 6:  # packed varints: one value per byte below 0x80
                total += int(np.count_nonzero(np.frombuffer(value, dtype=np.uint8) < 0x80))
            else:
                total += 1
        return total

    def typed_values(self, number: int) -> list[Any]:
        """The values of field ``number`` (floats for 4 and 10, unsigned varints otherwise)."""
        out: list[Any] = []
        for wire, value in self.typed.get(number, []):
            if number == 4:
                out.extend(struct.unpack(f"<{len(value) // 4}f", value))
            elif number == 10:
                out.extend(struct.unpack(f"<{len(value) // 8}d", value))
            else:
                out.extend(_repeated_varints(wire, value))
        return out

    def data_problem(self) -> str | None:
        """Why the data cannot be this tensor's (a negative dimension, a byte or value count that does not
        match ``dims``), None when it can or cannot be told (an unknown type, external data)."""
        if any(d < 0 for d in self.dims):
            return f"has a negative dimension {list(self.dims)}"
        bits = _ELEMENT_BITS.get(self.data_type)
        if self.external or bits is None:
            return None
        kind = ONNX_TYPE_NAMES[self.data_type]
        if self.raw is not None:
            want = -(-self.count * bits // 8)
            if len(self.raw) != want:
                return f"holds {len(self.raw)} bytes of {kind} for shape {list(self.dims)} (needs {want})"
            return None
        field_number, per_element = _TYPED_FIELD.get(self.data_type, (0, 0))
        if not field_number:
            return None
        have = self.typed_count(field_number)
        if have != self.count * per_element:
            return f"holds {have} values for shape {list(self.dims)} of {kind} (needs {self.count * per_element})"
        return None


def tensor_fields(buf: memoryview) -> TensorFields:
    """The fields of the TensorProto in ``buf``; ModelProtoError if it is not one."""
    name, dtype_code, location = "", 0, None
    dims: list[int] = []
    raw: memoryview | None = None
    typed: dict[int, list[tuple[int, Any]]] = {}
    external = False
    for number, wire, value, _, _ in _fields(buf):
        if number == 1:
            dims.extend(_signed64(v) for v in _repeated_varints(wire, value))
        elif number == 2 and wire == VARINT:
            dtype_code = value
        elif number == 8 and wire == LEN:
            name = _text(value)
        elif number == 9 and wire == LEN:
            raw = value
        elif number in (4, 5, 6, 7, 10, 11):
            typed.setdefault(number, []).append((wire, value))
        elif number == 13 and wire == LEN:
            external = True
            entry = _texts(value, 1, 2)  # StringStringEntryProto key, value
            if entry.get(1) == "location":
                location = entry.get(2, "")
        elif number == 14 and wire == VARINT and value == 1:
            external = True
    return TensorFields(name, dtype_code, tuple(dims), raw, typed, external, location)


def _texts(buf: memoryview, *numbers: int) -> dict[int, str]:
    """The string fields ``numbers`` of the message in ``buf`` (the last of each wins, as in protobuf)."""
    return {n: _text(v) for n, w, v, _, _ in _fields(buf) if w == LEN and n in numbers}


def _text(value: Any) -> str:
    if not isinstance(value, memoryview):
        raise ModelProtoError("a string field has a numeric wire type")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelProtoError(f"a name is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _tensor(buf: memoryview) -> Initializer:
    fields = tensor_fields(buf)
    name = fields.name
    if fields.external:
        raise ModelProtoError(f"initializer {name!r} keeps its data in an external file (not supported onboard)")
    dtype = ONNX_DTYPES.get(fields.data_type)
    if dtype is None:
        raise ModelProtoError(
            f"initializer {name!r} has ONNX data type {fields.data_type}, which flightd does not hold")
    shape = fields.dims
    count = int(np.prod(shape, dtype=np.int64))
    raw = bytes(fields.raw) if fields.raw is not None else _typed_to_raw(name, dtype, fields, count)
    if len(raw) != count * dtype.itemsize:
        raise ModelProtoError(f"initializer {name!r}: {len(raw)} bytes for shape {shape} of {dtype}")
    return Initializer(name, dtype, shape, raw)


def _typed_to_raw(name: str, dtype: np.dtype[Any], fields: TensorFields, count: int) -> bytes:
    if count == 0:
        return b""
    code = fields.data_type
    if code == 1:
        values: Any = fields.typed_values(4)
    elif code == 11:
        values = fields.typed_values(10)
    elif code in (7,):
        values = [_signed64(v) for v in fields.typed_values(7)]
    elif code in (12, 13):
        values = fields.typed_values(11)
    elif code == 10:  # float16 bit patterns travel in int32_data
        return np.asarray(fields.typed_values(5), dtype=np.uint16).tobytes()
    else:  # int8/uint8/int16/uint16/int32/bool travel in int32_data
        values = [_signed64(v) & 0xFFFFFFFF for v in fields.typed_values(5)]
        values = [v - (1 << 32) if v >= 1 << 31 else v for v in values]
    if len(values) != count:
        raise ModelProtoError(f"initializer {name!r}: {len(values)} values for {count} elements")
    return np.asarray(values).astype(dtype).tobytes()


def _attribute(buf: memoryview) -> tuple[str, float | int | None, bool]:
    name, value, tensor = "", None, False
    for number, _, raw, _, _ in _fields(buf):
        if number == 1:
            name = _text(raw)
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
            inputs.append(_text(value))
        elif number == 2:
            outputs.append(_text(value))
        elif number == 3:
            name = _text(value)
        elif number == 4:
            op_type = _text(value)
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
                    outputs.append(_text(sub_value))
        elif number == 15:
            sparse += 1
    return ModelGraph(initializers, nodes, outputs, sparse)


# ------------------------------------------------------------------------------------ outline


MAX_GRAPH_DEPTH = 31
"""Deepest nesting of subgraphs (If/Loop/Scan bodies) read; deeper is refused. Protobuf's parser, which
ONNX Runtime uses, refuses messages nested more than 100 deep (its default recursion limit), and each level
of subgraph costs three (node -> attribute -> graph): measured with ONNX Runtime 1.32, a model of 31
nested If levels loads and one of 32 does not ("protobuf parsing failed")."""

Dim = int | str | None
"""A declared dimension: a size, a symbolic name (``dim_param``) or None (neither given)."""


@dataclass(frozen=True)
class ValueSpec:
    """A graph input or output as declared: ``kind`` is "tensor", "sequence", "map", "optional",
    "sparse_tensor", "opaque" or "none" (no type at all); ``elem_type`` the ONNX data type code of a tensor
    (0 when not given); ``shape`` None when the rank is unknown (no shape declared)."""

    name: str
    kind: str
    elem_type: int = 0
    shape: tuple[Dim, ...] | None = None


@dataclass(frozen=True)
class OpUse:
    """An operator the model calls: ``domain`` ("" for ai.onnx), ``op_type``, where it was first found, and
    whether the opset_import in scope (the model's, or the enclosing function's) declares its domain."""

    domain: str
    op_type: str
    where: str
    declared: bool


@dataclass
class ModelOutline:
    """What the model registry checks of a model file before ONNX Runtime opens it (:func:`read_outline`).

    ``ir_version`` (None: not given), ``opset_import`` (domain -> version, "" = ai.onnx), the main graph's
    ``inputs`` (those that are not initializers) and ``outputs``; ``ops``: every (domain, op_type) used in any
    graph, subgraph or model-local function; ``functions``: the (domain, name) of model-local functions;
    ``external``: every tensor that keeps its data outside the file; ``damaged``: every tensor whose data
    do not fit its declared shape and type (also sparse tensors with inconsistent indices).
    """

    ir_version: int | None = None
    opset_import: dict[str, int] = field(default_factory=dict)
    inputs: list[ValueSpec] = field(default_factory=list)
    outputs: list[ValueSpec] = field(default_factory=list)
    ops: dict[tuple[str, str], OpUse] = field(default_factory=dict)
    functions: set[tuple[str, str]] = field(default_factory=set)
    external: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def canonical_domain(name: str) -> str:
    """An operator set domain as ONNX Runtime keys it: "ai.onnx" is the default domain, ""."""
    return "" if name == "ai.onnx" else name


def _opset_id(buf: memoryview) -> tuple[str, int]:
    domain, version = "", 0
    for number, wire, value, _, _ in _fields(buf):
        if number == 1 and wire == LEN:
            domain = _text(value)
        elif number == 2 and wire == VARINT:
            version = _signed64(value)
    return canonical_domain(domain), version


def _value_spec(buf: memoryview) -> ValueSpec:
    name, kind, elem_type, shape = "", "none", 0, None
    kinds = {1: "tensor", 4: "sequence", 5: "map", 7: "opaque", 8: "sparse_tensor", 9: "optional"}
    for number, wire, value, _, _ in _fields(buf):
        if number == 1 and wire == LEN:
            name = _text(value)
        elif number == 2 and wire == LEN:
            for type_number, type_wire, type_value, _, _ in _fields(value):
                if type_number in kinds and type_wire == LEN:
                    kind = kinds[type_number]
                    if kind == "tensor":
                        elem_type, shape = _tensor_type(type_value)
    return ValueSpec(name, kind, elem_type, shape)


def _tensor_type(buf: memoryview) -> tuple[int, tuple[Dim, ...] | None]:
    elem_type, shape = 0, None
    for number, wire, value, _, _ in _fields(buf):
        if number == 1 and wire == VARINT:
            elem_type = value
        elif number == 2 and wire == LEN:
            dims: list[Dim] = []
            for dim_number, dim_wire, dim_value, _, _ in _fields(value):
                if dim_number == 1 and dim_wire == LEN:
                    dims.append(_dimension(dim_value))
            shape = tuple(dims)
    return elem_type, shape


def _dimension(buf: memoryview) -> Dim:
    dim: Dim = None
    for number, wire, value, _, _ in _fields(buf):
        if number == 1 and wire == VARINT:
            dim = _signed64(value)
        elif number == 2 and wire == LEN and len(value):
            dim = _text(value)
    return dim


class _OutlineReader:
    """Walks a ModelProto (graphs, subgraphs in attributes, functions, training graphs) into a ModelOutline."""

    def __init__(self, max_depth: int = MAX_GRAPH_DEPTH) -> None:
        self.outline = ModelOutline()
        self.max_depth = max_depth

    def model(self, buf: memoryview) -> ModelOutline:
        out = self.outline
        graphs: list[memoryview] = []
        functions: list[memoryview] = []
        training: list[memoryview] = []
        for number, wire, value, _, _ in _fields(buf):
            if number == 1 and wire == VARINT:
                out.ir_version = _signed64(value)
            elif number == 7 and wire == LEN:
                graphs.append(value)
            elif number == 8 and wire == LEN:
                domain, version = _opset_id(value)
                out.opset_import[domain] = version
            elif number == 20 and wire == LEN:
                training.append(value)
            elif number == 25 and wire == LEN:
                functions.append(value)
        if not graphs:
            raise ModelProtoError("no graph in model (not an ONNX ModelProto?)")
        for function in functions:  # names first: nodes anywhere may call any local function
            out.functions.add(self._function_id(function))
        out.inputs, out.outputs = self.graph(graphs[-1], 0, out.opset_import, "")
        for function in functions:
            self.function(function)
        for info in training:  # TrainingInfoProto: initialization = 1, algorithm = 2
            for number, wire, value, _, _ in _fields(info):
                if number in (1, 2) and wire == LEN:
                    self.graph(value, 1, out.opset_import, "a training graph")
        return out

    def _function_id(self, buf: memoryview) -> tuple[str, str]:
        texts = _texts(buf, 1, 10)  # FunctionProto name, domain
        return canonical_domain(texts.get(10, "")), texts.get(1, "")

    def function(self, buf: memoryview) -> None:
        domain, name = self._function_id(buf)
        opsets = dict(_opset_id(v) for n, w, v, _, _ in _fields(buf) if n == 9 and w == LEN)
        where = f"function {domain + ':' if domain else ''}{name}"
        for number, wire, value, _, _ in _fields(buf):
            if number == 7 and wire == LEN:
                self.node(value, 1, opsets, where)

    def graph(
        self, buf: memoryview, depth: int, opsets: dict[str, int], context: str
    ) -> tuple[list[ValueSpec], list[ValueSpec]]:
        """Record the graph's operators and tensors; returns its (inputs that are not initializers, outputs).
        ``context`` says where the graph is (empty for the main graph)."""
        name = _texts(buf, 2).get(2, "")
        if depth > self.max_depth:
            raise GraphTooDeep(f"subgraphs nested more than {self.max_depth} deep (graph {name!r})")
        where = f"graph {name!r}" + (f" ({context})" if context else "")
        inputs: list[ValueSpec] = []
        outputs: list[ValueSpec] = []
        initializers: set[str] = set()
        for number, wire, value, _, _ in _fields(buf):
            if wire != LEN:
                continue
            if number == 1:
                self.node(value, depth, opsets, where)
            elif number == 5:
                initializers.add(self.tensor(tensor_fields(value), f"initializer {{}} in {where}"))
            elif number == 15:
                initializers.add(self.sparse(value, f"sparse initializer {{}} in {where}"))
            elif number == 11:
                inputs.append(_value_spec(value))
            elif number == 12:
                outputs.append(_value_spec(value))
        return [v for v in inputs if v.name not in initializers], outputs

    def node(self, buf: memoryview, depth: int, opsets: dict[str, int], where: str) -> None:
        op_type = name = domain = ""
        attributes: list[memoryview] = []
        for number, wire, value, _, _ in _fields(buf):
            if wire != LEN:
                continue
            if number == 3:
                name = _text(value)
            elif number == 4:
                op_type = _text(value)
            elif number == 5:
                attributes.append(value)
            elif number == 7:
                domain = canonical_domain(_text(value))
        here = f"node {name or op_type!r} in {where}"
        key = (domain, op_type)
        if key not in self.outline.ops:
            self.outline.ops[key] = OpUse(domain, op_type, here, domain in opsets)
        for attribute in attributes:
            self.attribute(attribute, depth, opsets, here)

    def attribute(self, buf: memoryview, depth: int, opsets: dict[str, int], where: str) -> None:
        here = f"attribute {_texts(buf, 1).get(1, '')!r} of {where}"
        for number, wire, value, _, _ in _fields(buf):
            if wire != LEN:
                continue
            if number in (5, 10):  # t, tensors
                self.tensor(tensor_fields(value), f"tensor {{}} in {here}")
            elif number in (22, 23):  # sparse_tensor, sparse_tensors
                self.sparse(value, f"sparse tensor {{}} in {here}")
            elif number in (6, 11):  # g, graphs
                self.graph(value, depth + 1, opsets, here)

    def tensor(self, tensor: TensorFields, where: str) -> str:
        """Record external data or damage of one tensor; returns its name. ``where`` has a ``{}`` for it."""
        place = where.format(repr(tensor.name))
        if tensor.external:
            location = f" (location {tensor.location!r})" if tensor.location is not None else ""
            self.outline.external.append(f"{place}{location}")
        problem = tensor.data_problem()
        if problem:
            self.outline.damaged.append(f"{place} {problem}")
        return tensor.name

    def sparse(self, buf: memoryview, where: str) -> str:
        """Record a SparseTensorProto (values = 1, indices = 2, dims = 3); returns the name of its values."""
        values = indices = None
        dims: list[int] = []
        for number, wire, value, _, _ in _fields(buf):
            if number == 1 and wire == LEN:
                values = tensor_fields(value)
            elif number == 2 and wire == LEN:
                indices = tensor_fields(value)
            elif number == 3:
                dims.extend(_signed64(v) for v in _repeated_varints(wire, value))
        if values is None or indices is None:
            self.outline.damaged.append(f"{where.format(repr(''))} lacks its values or indices")
            return values.name if values is not None else ""
        name = self.tensor(values, where)
        self.tensor(indices, f"indices of {where}")
        place = where.format(repr(name))
        problem = _sparse_problem(values, indices, tuple(dims))
        if problem:
            self.outline.damaged.append(f"{place} {problem}")
        return name


def _sparse_problem(values: TensorFields, indices: TensorFields, dims: tuple[int, ...]) -> str | None:
    """Why a sparse tensor's indices cannot address its values inside ``dims`` (ONNX Runtime read past the
    end of such tensors: microsoft/onnxruntime#19681), None when they can or its data are external."""
    if values.external or indices.external:
        return None
    if any(d < 0 for d in dims):
        return f"has a negative dimension {list(dims)}"
    nnz = values.dims[0] if len(values.dims) == 1 else -1
    if nnz < 0:
        return f"has values of shape {list(values.dims)} (must be one-dimensional)"
    if indices.dims not in ((nnz,), (nnz, len(dims))):
        return f"has indices of shape {list(indices.dims)} for {nnz} values in {len(dims)} dimensions"
    if indices.data_type != 7:
        return f"has indices of type {ONNX_TYPE_NAMES.get(indices.data_type, indices.data_type)} (must be int64)"
    if indices.raw is not None:
        if len(indices.raw) != indices.count * 8:
            return f"has {len(indices.raw)} bytes of indices for shape {list(indices.dims)}"
        index = np.frombuffer(indices.raw, dtype="<i8").reshape(indices.dims)
    else:
        index = np.asarray([_signed64(v) for v in indices.typed_values(7)], dtype=np.int64)
        if index.size != indices.count:
            return f"has {index.size} indices for shape {list(indices.dims)}"
        index = index.reshape(indices.dims)
    bound = np.asarray(dims, dtype=np.float64)
    limit = np.prod(bound) if index.ndim == 1 else bound
    if index.size and (np.any(index < 0) or np.any(index >= limit)):
        return f"has an index outside its shape {list(dims)}"
    return None


def read_outline(model_bytes: bytes, max_depth: int = MAX_GRAPH_DEPTH) -> ModelOutline:
    """The :class:`ModelOutline` of a serialized ModelProto; ModelProtoError when the bytes are not one
    (not ONNX, truncated inside a message, a name that is not UTF-8, subgraphs nested more than
    ``max_depth`` deep: :class:`GraphTooDeep`)."""
    return _OutlineReader(min(max_depth, MAX_GRAPH_DEPTH)).model(memoryview(model_bytes))


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


def encode_value_info(name: str, elem_type: int, dims: Sequence[int]) -> bytes:
    """A ValueInfoProto: a tensor of ONNX type code ``elem_type`` and fixed ``dims``."""
    shape = b"".join(_encode_len(1, _encode_varint_field(1, d)) for d in dims)
    tensor = _encode_varint_field(1, elem_type) + _encode_len(2, shape)
    return _encode_len(1, name.encode("utf-8")) + _encode_len(2, _encode_len(1, tensor))


def encode_graph(
    name: str, nodes: Sequence[bytes], inputs: Sequence[bytes], outputs: Sequence[bytes],
    initializers: Sequence[bytes] = (),
) -> bytes:
    """A GraphProto of encoded NodeProtos, ValueInfoProto inputs and outputs, and TensorProto initializers."""
    return (b"".join(_encode_len(1, n) for n in nodes) + _encode_len(2, name.encode("utf-8"))
            + b"".join(_encode_len(5, t) for t in initializers)
            + b"".join(_encode_len(11, i) for i in inputs) + b"".join(_encode_len(12, o) for o in outputs))


def encode_graph_attribute(name: str, graph: bytes) -> bytes:
    """An AttributeProto of type GRAPH (type code 5) holding the encoded GraphProto ``graph``."""
    return _encode_len(1, name.encode("utf-8")) + _encode_len(6, graph) + _encode_varint_field(20, 5)


def encode_model(ir_version: int, opset_import: dict[str, int], graph: bytes) -> bytes:
    """A ModelProto of the encoded GraphProto ``graph``, stamped with ``ir_version`` and ``opset_import``."""
    opsets = b"".join(_encode_len(8, _encode_len(1, d.encode("utf-8")) + _encode_varint_field(2, v))
                      for d, v in opset_import.items())
    return _encode_varint_field(1, ir_version) + _encode_len(7, graph) + opsets


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


def encode_nested_ifs(depth: int) -> bytes:
    """A ModelProto computing ``y = x`` (float32 [1]) through ``depth`` nested If nodes (each then-branch
    the next level), IR version 9, opset 17: the model that measures how deep ONNX Runtime nests
    subgraphs (:func:`flight.model_intake.runtime_graph_depth`)."""
    inner = encode_graph("level0", [encode_node("Identity", ["x"], ["o0"])], [], [encode_value_info("o0", 1, [1])])
    node = b""
    for level in range(1, depth + 1):
        other = encode_graph(f"else{level}", [encode_node("Identity", ["x"], [f"e{level}"])], [],
                             [encode_value_info(f"e{level}", 1, [1])])
        node = encode_node("If", ["cond"], [f"o{level}"], (encode_graph_attribute("then_branch", inner),
                                                           encode_graph_attribute("else_branch", other)))
        inner = encode_graph(f"level{level}", [node], [], [encode_value_info(f"o{level}", 1, [1])])
    top = encode_graph("g", [node, encode_node("Identity", [f"o{depth}"], ["y"])],
                       [encode_value_info("x", 1, [1])], [encode_value_info("y", 1, [1])],
                       [encode_tensor("cond", np.array(True))])
    return encode_model(9, {"": 17}, top)
