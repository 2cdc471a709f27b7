"""Algorithm-based fault tolerance for the final fully-connected layer: a checksum over the Gemm.

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

from dataclasses import dataclass
from typing import Any

import numpy as np

from flight.radiation.model_proto import Node, with_graph_outputs
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
