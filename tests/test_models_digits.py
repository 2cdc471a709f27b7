"""The digits classifiers: held-out accuracy of both committed forms, their agreement, the split's
hygiene, the numpy trainer's gradients (finite differences) and the ONNX export (vs numpy forward)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ground.model.datasets import digits_split, synthetic_tiles, tile_validation
from tools.build_models import (
    _digits_backward,
    _digits_forward,
    _digits_init,
    digits_forward,
    digits_graph,
)

MODELS = Path(__file__).resolve().parent.parent / "models"


def _run(name: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(MODELS / name / "1.0.0" / "model.onnx"), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0])


@pytest.fixture(scope="module")
def predictions() -> dict[str, np.ndarray]:
    split = digits_split()
    return {
        name: np.argmax(_run(name, {"image": split.x_test}), axis=1) for name in ("digits-fp32", "digits-int8")
    } | {"truth": split.y_test}


def test_held_out_split_is_disjoint_from_training_and_balanced() -> None:
    split = digits_split()
    assert len(split.y_test) == 360 and len(split.y_train) == 1437
    train_rows = {row.tobytes() for row in split.x_train.reshape(len(split.x_train), -1)}
    test_rows = [row.tobytes() for row in split.x_test.reshape(len(split.x_test), -1)]
    # load_digits has a handful of duplicate images; the held-out set must be overwhelmingly unseen.
    assert sum(row in train_rows for row in test_rows) <= 3
    assert set(np.bincount(split.y_test, minlength=10)) <= {35, 36, 37}
    assert split.x_test.min() >= 0.0 and split.x_test.max() <= 1.0


def test_fp32_accuracy_on_held_out(predictions: dict[str, np.ndarray]) -> None:
    assert np.mean(predictions["digits-fp32"] == predictions["truth"]) >= 0.95


def test_int8_accuracy_within_one_point_of_fp32(predictions: dict[str, np.ndarray]) -> None:
    acc32 = np.mean(predictions["digits-fp32"] == predictions["truth"])
    acc8 = np.mean(predictions["digits-int8"] == predictions["truth"])
    assert acc8 >= 0.95
    assert acc32 - acc8 <= 0.01


def test_int8_graph_is_qdq() -> None:
    import onnx

    model = onnx.load(str(MODELS / "digits-int8" / "1.0.0" / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 4  # two conv + two gemm weight tensors


def test_backprop_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    params = {k: v.astype(np.float64) for k, v in _digits_init(rng).items()}
    params = {k: v + rng.normal(0, 0.05, v.shape) for k, v in params.items()}  # nonzero biases
    x = rng.uniform(0, 1, (4, 1, 8, 8))
    y = np.array([0, 3, 5, 9])

    def loss(p: dict[str, np.ndarray]) -> float:
        logits = digits_forward(p, x)  # type: ignore[arg-type]
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(4), y].mean())

    logits, cache = _digits_forward(params, x)  # type: ignore[arg-type]
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    prob[np.arange(4), y] -= 1.0
    grads = _digits_backward(params, cache, prob / 4)  # type: ignore[arg-type]
    eps = 1e-6
    for key in ["conv1.w", "conv2.w", "conv2.b", "fc1.w", "fc2.b"]:
        for flat_index in rng.choice(params[key].size, size=3, replace=False):
            index = np.unravel_index(flat_index, params[key].shape)
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[key][index] += eps
            minus[key][index] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
            assert grads[key][index] == pytest.approx(numeric, rel=1e-4, abs=1e-7), (key, index)


def test_onnx_export_matches_numpy_forward(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    params = _digits_init(rng)
    path = tmp_path / "digits.onnx"
    path.write_bytes(digits_graph(params).SerializeToString())
    x = rng.uniform(0, 1, (7, 1, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"image": x})[0], digits_forward(params, x), rtol=1e-4, atol=1e-5)


def test_tile_int8_keeps_fp32_decisions_on_generated_tiles() -> None:
    tiles, keep = tile_validation(count=32)
    fp32 = _run("tile-fp32", {"tile": tiles})[:, 0]
    int8 = _run("tile-int8", {"tile": tiles})[:, 0]
    assert np.mean((fp32 > 0) == (int8 > 0)) >= 0.9
    # Both labels occur, and the head is better than always answering the majority class.
    assert 0 < keep.sum() < len(keep)
    assert np.mean((fp32 > 0) == keep) > max(keep.mean(), 1 - keep.mean())
    assert synthetic_tiles(1, seed=3)[0].shape == (1, 3, 128, 128)
