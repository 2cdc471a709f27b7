"""Algorithm-based fault tolerance: checksums over the final Gemm and over every convolution.

For Y = alpha * A op(B) + beta * C (ONNX Gemm, C broadcast over rows), the row sums obey
sum_j Y[i, j] = alpha * A[i, :] . w + beta * sum_j C[j], with w = op(B) 1 computed once from the
verified weights (Huang & Abraham, "Algorithm-Based Fault Tolerance for Matrix Operations",
IEEE Trans. Computers C-33, 1984; FT-CNN, arXiv 2003.12203, applies the same idea to CNN layers).
The session is built with the Gemm's input A as an extra graph output; the check is one dot product
per row, so it costs next to nothing. It covers the final layer only: a fault in a convolution's
weights or activations before A is not seen (the scrubber catches weight faults, DMR the rest).

Tolerance: float32 accumulation over K terms errs by at most K * eps32 * sum_k |alpha A_ik| |B|_k
(+ the same for the bias) (Higham, *Accuracy and Stability of Numerical Algorithms*, 2002, eq. 3.5);
twice that bound is allowed, so smaller output changes go unnoticed (they change the result by less
than float32 rounding could).

FP32 only: in the QDQ models the final Gemm reads dequantised weights and a re-quantised input, which
this check would have to replay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flight.model_proto import (
    Node,
    encode_int_attribute,
    encode_node,
    encode_tensor,
    extend_graph,
    with_graph_outputs,
)
from flight.radiation.weights import WeightStore

EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class GemmChecksum:
    """The check of one Gemm: ``input_name`` (A), ``output_name`` (Y), the column checksum ``w`` of op(B),
    its absolute counterpart ``w_abs``, the bias sum and the Gemm's scalars."""

    input_name: str
    output_name: str
    w: np.ndarray[Any, np.dtype[np.float64]]
    w_abs: np.ndarray[Any, np.dtype[np.float64]]
    bias_sum: float
    bias_abs: float
    alpha: float
    trans_a: bool

    @classmethod
    def final_layer(cls, store: WeightStore) -> GemmChecksum:
        """The check for the Gemm that produces the model's first output; ValueError if there is none
        with float32 weights held in ``store``."""
        graph = store.graph
        if not graph.outputs:
            raise ValueError(f"model {store.model} has no outputs")
        node = next((n for n in graph.nodes if graph.outputs[0] in n.outputs), None)
        held = {s.name: s for s in store.slots}
        if node is None or node.op_type != "Gemm" or len(node.inputs) < 2 or node.inputs[1] not in held:
            raise ValueError(f"model {store.model}: its output is not made by a Gemm over held weights")
        return cls._build(store, node, held)

    @classmethod
    def _build(cls, store: WeightStore, node: Node, held: dict[str, Any]) -> GemmChecksum:
        b = store.array(0, node.inputs[1]).astype(np.float64)
        if held[node.inputs[1]].dtype != np.float32:
            raise ValueError(f"model {store.model}: final Gemm weights are {held[node.inputs[1]].dtype}, not float32")
        if int(node.attributes.get("transB", 0)):
            b = b.T
        alpha = float(node.attributes.get("alpha", 1.0))
        beta = float(node.attributes.get("beta", 1.0))
        bias_sum = bias_abs = 0.0
        if len(node.inputs) > 2 and node.inputs[2]:
            c = np.broadcast_to(store.array(0, node.inputs[2]).astype(np.float64), (1, b.shape[1]))
            bias_sum, bias_abs = beta * float(c.sum()), abs(beta) * float(np.abs(c).sum())
        return cls(node.inputs[0], node.outputs[0], b.sum(axis=1), np.abs(b).sum(axis=1),
                   bias_sum, bias_abs, alpha, bool(int(node.attributes.get("transA", 0))))

    def model_bytes(self, model_bytes: bytes) -> bytes:
        """The model with A added as a graph output (build the checked session from these bytes)."""
        return with_graph_outputs(model_bytes, [self.input_name])

    def residual(self, outputs: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Per row: |checksum mismatch| / allowed error; a value above 1 is a detected fault."""
        a = outputs[self.input_name].astype(np.float64)
        if self.trans_a:
            a = a.T
        y = outputs[self.output_name].astype(np.float64)
        expected = self.alpha * (a @ self.w) + self.bias_sum
        bound = 2.0 * a.shape[1] * EPS32 * (abs(self.alpha) * (np.abs(a) @ self.w_abs) + self.bias_abs) + 1e-30
        with np.errstate(invalid="ignore"):
            ratio = np.abs(y.sum(axis=1) - expected) / bound
        return np.asarray(np.where(np.isfinite(ratio), ratio, np.inf), dtype=np.float64)

    def ok(self, outputs: dict[str, np.ndarray[Any, Any]]) -> bool:
        """True if every row's checksum holds within the rounding bound."""
        return bool(np.all(self.residual(outputs) <= 1.0))


CONV_TOLERANCE = 64 * EPS32
"""Allowed |sum(Y) - checksum| relative to the absolute-value checksum: 7.6e-6, 50x the worst seen on
clean tile-fp32 runs (1.4e-7 over 30 random tiles; an empirical threshold, as ABFT schemes use)."""


@dataclass(frozen=True)
class ConvChecksums:
    """Checksums of every Conv (group 1) over held float32 weights, computed inside the same session.

    For Y = Conv(X, W) + b, summing over output channels and positions: sum(Y) = sum(Conv(X, W_sum) + sum(b))
    with W_sum = sum_c W[c] (one output channel), so each layer gets a checker Conv with two output
    channels, W_sum and |W|_sum (the error scale; over |X| unless X comes out of a Relu), 2/C_out of the
    layer's cost, reduced to two numbers per sample; sum(Y) is one more pass over the layer's output, and
    exposing Y stops ONNX Runtime fusing the Conv with its Relu. The checker weights are derived from the
    verified weights at build time and live in the graph (ONNX Runtime's memory, not scrubbed; a flip there
    raises a false alarm or hides a layer's check).
    A fault in an activation after a layer's output (before the next layer reads it) is consistent with
    both checks and is not seen; nor is one in the model input.
    """

    layers: tuple[str, ...]
    skipped: tuple[str, ...]
    nodes: tuple[bytes, ...]
    initializers: tuple[bytes, ...]

    @classmethod
    def for_model(cls, store: WeightStore) -> ConvChecksums:
        held = {s.name: s for s in store.slots}
        nodes: list[bytes] = []
        inits: list[bytes] = [encode_tensor("abft.axes", np.array([1, 2, 3], dtype=np.int64)),
                              encode_tensor("abft.axes23", np.array([2, 3], dtype=np.int64))]
        nonnegative = {o for n in store.graph.nodes if n.op_type == "Relu" for o in n.outputs}
        layers: list[str] = []
        skipped: list[str] = []
        for node in store.graph.nodes:
            if node.op_type != "Conv":
                continue
            w_name = node.inputs[1] if len(node.inputs) > 1 else ""
            if (w_name not in held or held[w_name].dtype != np.float32 or int(node.attributes.get("group", 1)) != 1
                    or len(held[w_name].shape) != 4):
                skipped.append(node.outputs[0])
                continue
            w = store.array(0, w_name).astype(np.float64)
            b = (store.array(0, node.inputs[2]).astype(np.float64)
                 if len(node.inputs) > 2 and node.inputs[2] in held else np.zeros(w.shape[0]))
            k = f"abft.{len(layers)}"
            x, y = node.inputs[0], node.outputs[0]
            flat = (encode_int_attribute("keepdims", 0),)
            sums = np.stack([w.sum(axis=0), np.abs(w).sum(axis=0)]).astype(np.float32)  # [2, C_in, kh, kw]
            bias = np.array([b.sum(), np.abs(b).sum()], dtype=np.float32)
            if x in nonnegative:  # one 2-channel checker over X itself: Conv(X, [W_sum; |W|_sum])
                inits += [encode_tensor(f"{k}.w", sums), encode_tensor(f"{k}.b", bias)]
                nodes.append(encode_node("Conv", [x, f"{k}.w", f"{k}.b"], [f"{k}.c"], node.raw_attributes))
            else:  # the scale needs |X|: Conv(X, W_sum) and Conv(|X|, |W|_sum), side by side
                inits += [encode_tensor(f"{k}.w", sums[:1]), encode_tensor(f"{k}.b", bias[:1]),
                          encode_tensor(f"{k}.wabs", sums[1:]), encode_tensor(f"{k}.babs", bias[1:])]
                nodes += [
                    encode_node("Conv", [x, f"{k}.w", f"{k}.b"], [f"{k}.c0"], node.raw_attributes),
                    encode_node("Abs", [x], [f"{k}.xabs"]),
                    encode_node("Conv", [f"{k}.xabs", f"{k}.wabs", f"{k}.babs"], [f"{k}.c1"], node.raw_attributes),
                    encode_node("Concat", [f"{k}.c0", f"{k}.c1"], [f"{k}.c"], (encode_int_attribute("axis", 1),)),
                ]
            nodes += [
                encode_node("ReduceSum", [f"{k}.c", "abft.axes23"], [f"{k}.check"], flat),  # [N, 2]
                encode_node("ReduceSum", [y, "abft.axes"], [f"{k}.ysum"], flat),  # [N]
            ]
            layers.append(y)
        if not layers:
            raise ValueError(f"model {store.model} has no float32 Conv to check")
        return cls(tuple(layers), tuple(skipped), tuple(nodes), tuple(inits))

    @property
    def outputs(self) -> list[str]:
        return [f"abft.{i}.{part}" for i in range(len(self.layers)) for part in ("check", "ysum")]

    def model_bytes(self, model_bytes: bytes, extra_outputs: Sequence[str] = ()) -> bytes:
        """The model with the checker nodes and their outputs (and ``extra_outputs``) added."""
        return extend_graph(model_bytes, self.nodes, self.initializers, [*self.outputs, *extra_outputs])

    def residual(self, outputs: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Per layer and sample: |sum(Y) - checksum| / (tolerance * scale); above 1 is a detected fault."""
        rows = []
        for i in range(len(self.layers)):
            check = outputs[f"abft.{i}.check"].astype(np.float64)
            csum, bound, ysum = check[:, 0], check[:, 1], outputs[f"abft.{i}.ysum"].astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.abs(ysum - csum) / (CONV_TOLERANCE * bound + 1e-30)
            rows.append(np.where(np.isfinite(ratio), ratio, np.inf))
        return np.asarray(rows, dtype=np.float64)

    def ok(self, outputs: dict[str, np.ndarray[Any, Any]]) -> bool:
        return bool(np.all(self.residual(outputs) <= 1.0))


@dataclass(frozen=True)
class ModelChecksums:
    """Every check this module can apply to a model: its convolutions and, if it ends in one, its final Gemm."""

    convs: ConvChecksums | None
    gemm: GemmChecksum | None

    @classmethod
    def for_model(cls, store: WeightStore) -> ModelChecksums:
        convs: ConvChecksums | None = None
        gemm: GemmChecksum | None = None
        with contextlib.suppress(ValueError):
            convs = ConvChecksums.for_model(store)
        with contextlib.suppress(ValueError):
            gemm = GemmChecksum.final_layer(store)
        if convs is None and gemm is None:
            raise ValueError(f"model {store.model}: nothing this module can check (no float32 Conv or final Gemm)")
        return cls(convs, gemm)

    def model_bytes(self, model_bytes: bytes) -> bytes:
        extra = [self.gemm.input_name] if self.gemm else []
        if self.convs:
            return self.convs.model_bytes(model_bytes, extra)
        return with_graph_outputs(model_bytes, extra)

    def ok(self, outputs: dict[str, np.ndarray[Any, Any]]) -> bool:
        return (self.convs is None or self.convs.ok(outputs)) and (self.gemm is None or self.gemm.ok(outputs))
