"""Models that can never run onboard, built with ``onnx`` the way their users made them, and a good one.

Each builder returns the bytes of a model file (``external_data`` also writes the side file); the base
model is ``y = x + W`` over float32 ``[N, 4]`` (opset 17, IR version 9), what every variant spoils in
one way. Used by tests/test_model_intake.py (no broker) and tests/test_model_intake_e2e.py (flightd).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from flight.model_proto import (
    encode_nested_ifs,
)

W = np.arange(4, dtype=np.float32) / 4


def _model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
           outputs: Sequence[onnx.ValueInfoProto], initializers: Sequence[TensorProto] = (),
           opsets: dict[str, int] | None = None, ir_version: int = 9, functions: Sequence[onnx.FunctionProto] = (),
           sparse: Sequence[onnx.SparseTensorProto] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers),
                              sparse_initializer=list(sparse))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in (opsets or {"": 17}).items()],
                              functions=list(functions))
    model.ir_version = ir_version
    return model


def _x(shape: list[int | str] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4] if shape is None else shape)


def _y(shape: list[int | str] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4] if shape is None else shape)


def adder(opsets: dict[str, int] | None = None, ir_version: int = 9) -> onnx.ModelProto:
    """The good model: ``y = x + W``."""
    return _model([helper.make_node("Add", ["x", "W"], ["y"])], [_x()], [_y()], [numpy_helper.from_array(W, "W")],
                  opsets=opsets, ir_version=ir_version)


def good() -> bytes:
    return adder().SerializeToString()


def _external(tensor: TensorProto, location: str = "weights.bin") -> TensorProto:
    """``tensor`` with its data moved out of the file to ``location`` (as onnx's external-data writer does)."""
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def external_data(directory: Path) -> bytes:
    """The good model saved by ``onnx.save_model(..., save_as_external_data=True)``: weights in
    ``directory/weights.bin``, the graph in ``directory/model.onnx`` (returned)."""
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save_model(adder(), str(directory / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    return (directory / "model.onnx").read_bytes()


def external_in_subgraph() -> bytes:
    """An If whose then-branch holds a Constant with external data (two levels below the graph)."""
    const = helper.make_node("Constant", [], ["c"], value=_external(numpy_helper.from_array(W, "c")))
    then = helper.make_graph([const, helper.make_node("Add", ["x", "c"], ["t"])], "then", [], [_named("t")])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [_named("e")])
    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)
    return _model([node], [_x()], [_y()], [cond]).SerializeToString()


def _named(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4])


def external_in_function() -> bytes:
    """A model-local function whose body holds a Constant with external data."""
    const = helper.make_node("Constant", [], ["c"], value=_external(numpy_helper.from_array(W, "c")))
    body = [const, helper.make_node("Add", ["a", "c"], ["b"])]
    function = helper.make_function("org.example", "AddW", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    node = helper.make_node("AddW", ["x"], ["y"], domain="org.example")
    return _model([node], [_x()], [_y()], opsets={"": 17, "org.example": 1}, functions=[function]).SerializeToString()


def external_sparse() -> bytes:
    """A sparse initializer whose values live in a side file."""
    values = _external(numpy_helper.from_array(W, "W"))
    indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), "W_indices")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    return _model([helper.make_node("Add", ["x", "W"], ["y"])], [_x()], [_y()], sparse=[sparse]).SerializeToString()


def custom_domain() -> bytes:
    """``y = com.acme:Frobnicate(x)``: needs a custom-op library."""
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.acme")
    return _model([node], [_x()], [_y()], opsets={"": 17, "com.acme": 1}).SerializeToString()


def local_function() -> bytes:
    """``y = com.acme:Frobnicate(x)`` with Frobnicate defined in the model (``y = x + x``): runs."""
    body = [helper.make_node("Add", ["a", "a"], ["b"])]
    function = helper.make_function("com.acme", "Frobnicate", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.acme")
    return _model([node], [_x()], [_y()], opsets={"": 17, "com.acme": 1}, functions=[function]).SerializeToString()


def opset(version: int) -> bytes:
    """The good model stamped with ai.onnx opset ``version``."""
    return adder(opsets={"": version}).SerializeToString()


def ir_version(version: int) -> bytes:
    """The good model stamped with IR version ``version``."""
    return adder(ir_version=version).SerializeToString()


def unknown_rank_output() -> bytes:
    """``y = Reshape(x, shape)``: the output's rank depends on the input ``shape``, so none is declared."""
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return _model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [_x(), shape], [out]).SerializeToString()


def unknown_rank_input() -> bytes:
    """``y = x + W`` with no shape declared for ``x``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    return _model([helper.make_node("Add", ["x", "W"], ["y"])], [x], [_y()],
                  [numpy_helper.from_array(W, "W")]).SerializeToString()


def shared_dims() -> bytes:
    """``y = a + b`` over float32 ``[N, 4]`` each: ``N`` is one size for both inputs."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("a", "b")]
    return _model([helper.make_node("Add", ["a", "b"], ["y"])], inputs, [_y()]).SerializeToString()


def damaged_tensor() -> bytes:
    """W declares shape [4] float32 (16 bytes) but holds 12."""
    w = numpy_helper.from_array(W, "W")
    w.raw_data = w.raw_data[:12]
    return _model([helper.make_node("Add", ["x", "W"], ["y"])], [_x()], [_y()], [w]).SerializeToString()


def sparse_out_of_range() -> bytes:
    """A sparse initializer of shape [4] whose second index is 9."""
    values = numpy_helper.from_array(W[:2].copy(), "W")
    indices = numpy_helper.from_array(np.array([0, 9], dtype=np.int64), "W_indices")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    return _model([helper.make_node("Add", ["x", "W"], ["y"])], [_x()], [_y()], sparse=[sparse]).SerializeToString()


def sequence_input() -> bytes:
    """``y = SequenceAt(xs, 0)``: the input is a sequence of tensors, which no job carries."""
    xs = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, ["N", 4])
    zero = numpy_helper.from_array(np.array(0, dtype=np.int64), "zero")
    return _model([helper.make_node("SequenceAt", ["xs", "zero"], ["y"])], [xs], [_y()], [zero]).SerializeToString()


def bfloat16_input() -> bytes:
    """``y = Cast(x: bfloat16)``: the link carries no bfloat16."""
    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["N", 4])
    return _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], [x], [_y()]).SerializeToString()


def nested(depth: int) -> bytes:
    """``y = x`` through ``depth`` nested If nodes (each then-branch the next level), encoded directly: the
    ``onnx`` package's own protobuf refuses to build much more than 30 levels."""
    return encode_nested_ifs(depth)
