"""Rebuild every bundled model under ``models/`` from data that installed packages ship.

Nothing is downloaded: the data sets are ground/model/datasets.py's. Run from the repository root::

    .venv/bin/python -m tools.build_models            # (re)write models/ and models/SHA256SUMS
    .venv/bin/python -m tools.build_models --check    # rebuild into a temp dir, compare sha256s
    .venv/bin/python -m tools.build_models --write-calib digits /tmp/digits_calib.npz

Models (all version ``1.0.0``, opset 17, IR version 8 so older onnxruntime builds load them):

- ``digits-fp32``: small CNN on scikit-learn's 8x8 digits, trained here with numpy (im2col conv,
  manual backprop, Adam, seed 0). Input ``image`` float32 [N,1,8,8] = pixel value / 16 (0..1),
  output ``logits`` float32 [N,10].
- ``digits-int8``: the same, static QDQ (ground.model.quantize) calibrated on 256 training images.
- ``tile-fp32`` / ``tile-int8``: a Phi-Sat-1-style "is this tile worth downlinking" triage CNN,
  input ``tile`` float32 [N,3,128,128] (RGB 0..1), output ``keep_logit`` float32 [N,1]; 7 conv
  layers with seeded random (He) weights and a logistic-regression head fitted on generated tiles
  (keep = cloud cover below 30 %). Sized like the reference 2.3 M-parameter net
  (/work/shared/reference/boards-and-runtime.md: 184 FP32 vs 496 INT8 inf/s at 2 threads).
- ``multi-input``: ``a`` float16 [2,3] and ``b`` int64 [2,3] -> ``sum`` float32 [2,3] =
  float(a) + float(b) and ``argmax`` int64 [2] = argmax of ``sum`` along axis 1.
- ``uint8-mean``: ``pixels`` uint8 [N,H,W] -> ``mean`` float32 [N] (mean pixel value per image).

Determinism: fixed seeds, fixed data order and fixed ONNX metadata (no library versions) give
byte-identical files on a given machine and library build (``--check`` verifies); another BLAS may
change the trained digits weights in the last bits, hence their sha256.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from ground.model.datasets import (
    DIGITS_CALIB_SAMPLES,
    DIGITS_TEST_FRACTION,
    SEED,
    TILE_CALIB_SAMPLES,
    TILE_CALIB_SEED,
    TILE_FIT_SAMPLES,
    TILE_FIT_SEED,
    TILE_KEEP_MAX_CLOUD,
    TILE_SIZE,
    TILE_VALIDATION_SAMPLES,
    TILE_VALIDATION_SEED,
    DigitsSplit,
    digits_calibration,
    digits_split,
    tile_calibration,
    tile_fit_set,
    tile_validation,
)
from ground.model.files import build_manifest, sha256sums_text, write_manifest, write_sha256sums
from ground.model.quantize import quantize_model
from link.digest import sha256_file
from link.manifest import MODEL_FILE

F32 = npt.NDArray[np.float32]

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "models"
VERSION = "1.0.0"
OPSET = 17
IR_VERSION = 8
PRODUCER = "orbitd tools/build_models.py"

DIGITS_EPOCHS = 40
DIGITS_BATCH = 32
DIGITS_LR = 2e-3

TILE_CHANNELS = (64, 64, 128, 128, 256, 256, 512)
TILE_STRIDES = (2, 2, 1, 2, 1, 2, 1)
TILE_HEAD_C = 10.0


# ---------------------------------------------------------------------------------------------------
# numpy CNN (digits)
# ---------------------------------------------------------------------------------------------------


def _im2col(x: F32, k: int, pad: int, stride: int) -> tuple[F32, int, int]:
    """[N,C,H,W] -> columns [N*OH*OW, C*k*k] (channel-major, then kernel row, column)."""
    n, c, h, w = x.shape
    oh = (h + 2 * pad - k) // stride + 1
    ow = (w + 2 * pad - k) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((n, c, k, k, oh, ow), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * k * k), oh, ow


def _col2im(dcols: F32, shape: tuple[int, ...], k: int, pad: int, stride: int, oh: int, ow: int) -> F32:
    """Adjoint of :func:`_im2col`: accumulate column gradients back into [N,C,H,W]."""
    n, c, h, w = shape
    d = dcols.reshape(n, oh, ow, c, k, k).transpose(0, 3, 4, 5, 1, 2)
    dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dcols.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] += d[:, :, i, j]
    return dxp[:, :, pad : pad + h, pad : pad + w]


@dataclass(frozen=True)
class ConvSpec:
    """A 3x3 convolution with ``pad`` 1 and ``stride``, followed by ReLU."""

    stride: int


DIGITS_CONVS = (ConvSpec(1), ConvSpec(2))


def _digits_init(rng: np.random.Generator) -> dict[str, F32]:
    def he(shape: tuple[int, ...], fan_in: int) -> F32:
        weights: F32 = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        return weights

    return {
        "conv1.w": he((16, 1, 3, 3), 9),
        "conv1.b": np.zeros(16, np.float32),
        "conv2.w": he((32, 16, 3, 3), 144),
        "conv2.b": np.zeros(32, np.float32),
        "fc1.w": he((64, 512), 512),
        "fc1.b": np.zeros(64, np.float32),
        "fc2.w": he((10, 64), 64) * np.float32(0.5),
        "fc2.b": np.zeros(10, np.float32),
    }


def digits_forward(params: dict[str, F32], x: F32) -> F32:
    """Logits [N,10] of the numpy digits CNN (the graph :func:`digits_graph` exports)."""
    return _digits_forward(params, x)[0]


def _digits_forward(params: dict[str, F32], x: F32) -> tuple[F32, dict[str, Any]]:
    cache: dict[str, Any] = {}
    h = x
    for index, spec in enumerate(DIGITS_CONVS, start=1):
        w = params[f"conv{index}.w"]
        cols, oh, ow = _im2col(h, 3, 1, spec.stride)
        z = cols @ w.reshape(w.shape[0], -1).T + params[f"conv{index}.b"]
        out = np.maximum(z, 0.0).reshape(h.shape[0], oh, ow, w.shape[0]).transpose(0, 3, 1, 2)
        cache[f"conv{index}"] = (h.shape, cols, oh, ow, z)
        h = np.ascontiguousarray(out)
    flat = h.reshape(h.shape[0], -1)
    z1 = flat @ params["fc1.w"].T + params["fc1.b"]
    a1 = np.maximum(z1, 0.0)
    logits = a1 @ params["fc2.w"].T + params["fc2.b"]
    cache.update(flat=flat, z1=z1, a1=a1, conv_out_shape=h.shape)
    return logits, cache


def _digits_backward(params: dict[str, F32], cache: dict[str, Any], dlogits: F32) -> dict[str, F32]:
    grads: dict[str, F32] = {}
    grads["fc2.w"] = dlogits.T @ cache["a1"]
    grads["fc2.b"] = dlogits.sum(axis=0)
    da1 = dlogits @ params["fc2.w"]
    dz1 = da1 * (cache["z1"] > 0)
    grads["fc1.w"] = dz1.T @ cache["flat"]
    grads["fc1.b"] = dz1.sum(axis=0)
    dh = (dz1 @ params["fc1.w"]).reshape(cache["conv_out_shape"])
    for index in range(len(DIGITS_CONVS), 0, -1):
        spec = DIGITS_CONVS[index - 1]
        w = params[f"conv{index}.w"]
        in_shape, cols, oh, ow, z = cache[f"conv{index}"]
        dz = dh.transpose(0, 2, 3, 1).reshape(-1, w.shape[0]) * (z > 0)
        grads[f"conv{index}.w"] = (dz.T @ cols).reshape(w.shape)
        grads[f"conv{index}.b"] = dz.sum(axis=0)
        if index > 1:
            dh = _col2im(dz @ w.reshape(w.shape[0], -1), in_shape, 3, 1, spec.stride, oh, ow)
    return grads


def train_digits(split: DigitsSplit, epochs: int = DIGITS_EPOCHS, seed: int = SEED) -> dict[str, F32]:
    """Train the digits CNN with softmax cross-entropy and Adam (lr 2e-3, batch 32); returns weights."""
    rng = np.random.default_rng(seed)
    params = _digits_init(rng)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    n = split.x_train.shape[0]
    for _epoch in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, DIGITS_BATCH):
            idx = order[start : start + DIGITS_BATCH]
            x = split.x_train[idx]
            y = split.y_train[idx]
            logits, cache = _digits_forward(params, x)
            shifted = logits - logits.max(axis=1, keepdims=True)
            prob = np.exp(shifted)
            prob /= prob.sum(axis=1, keepdims=True)
            prob[np.arange(len(y)), y] -= 1.0
            grads = _digits_backward(params, cache, (prob / len(y)).astype(np.float32))
            step += 1
            for key in params:
                g = grads[key].astype(np.float32)
                m[key] = beta1 * m[key] + (1 - beta1) * g
                v[key] = beta2 * v[key] + (1 - beta2) * g * g
                m_hat = m[key] / (1 - beta1**step)
                v_hat = v[key] / (1 - beta2**step)
                params[key] = (params[key] - DIGITS_LR * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)
    return params


# ---------------------------------------------------------------------------------------------------
# ONNX graphs
# ---------------------------------------------------------------------------------------------------


def _model(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version=VERSION,
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def digits_graph(params: dict[str, F32]) -> onnx.ModelProto:
    """ONNX graph of the digits CNN: Conv-ReLU, Conv(stride 2)-ReLU, Flatten, Gemm-ReLU, Gemm."""
    inits = [numpy_helper.from_array(np.ascontiguousarray(arr), name) for name, arr in params.items()]
    nodes = [
        helper.make_node("Conv", ["image", "conv1.w", "conv1.b"], ["c1"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "conv2.w", "conv2.b"], ["c2"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc1.w", "fc1.b"], ["f1"], transB=1),
        helper.make_node("Relu", ["f1"], ["r3"]),
        helper.make_node("Gemm", ["r3", "fc2.w", "fc2.b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    return _model(graph, "8x8 digit classifier; image = pixel/16 in 0..1; logits over classes 0-9")


def tile_backbone_params(seed: int = SEED + 1) -> dict[str, F32]:
    """Seeded He-initialised weights of the 7 tile convolutions (biases small positive)."""
    rng = np.random.default_rng(seed)
    params: dict[str, F32] = {}
    cin = 3
    for index, cout in enumerate(TILE_CHANNELS, start=1):
        fan_in = cin * 9
        params[f"conv{index}.w"] = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / fan_in)).astype(
            np.float32
        )
        params[f"conv{index}.b"] = np.full(cout, 0.01, np.float32)
        cin = cout
    return params


def tile_graph(
    params: dict[str, F32], head_w: F32 | None, head_b: F32 | None, features_only: bool = False
) -> onnx.ModelProto:
    """ONNX graph of the tile triage CNN: 7x (Conv 3x3 - ReLU), GlobalAveragePool, Flatten, Gemm.
    With ``features_only`` the output is the pooled 512-vector ``features`` (used to fit the head)."""
    nodes = []
    current = "tile"
    for index, stride in enumerate(TILE_STRIDES, start=1):
        nodes.append(helper.make_node("Conv", [current, f"conv{index}.w", f"conv{index}.b"], [f"c{index}"],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]))
        nodes.append(helper.make_node("Relu", [f"c{index}"], [f"r{index}"]))
        current = f"r{index}"
    nodes.append(helper.make_node("GlobalAveragePool", [current], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    inits = [numpy_helper.from_array(arr, name) for name, arr in params.items()]
    if features_only:
        outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", TILE_CHANNELS[-1]])]
    else:
        if head_w is None or head_b is None:
            raise ValueError("the full tile graph needs head weights")
        nodes.append(helper.make_node("Gemm", ["features", "head.w", "head.b"], ["keep_logit"], transB=1))
        inits += [numpy_helper.from_array(head_w, "head.w"), numpy_helper.from_array(head_b, "head.b")]
        outputs = [helper.make_tensor_value_info("keep_logit", TensorProto.FLOAT, ["N", 1])]
    graph = helper.make_graph(
        nodes,
        "tile_triage_cnn",
        [helper.make_tensor_value_info("tile", TensorProto.FLOAT, ["N", 3, TILE_SIZE, TILE_SIZE])],
        outputs,
        initializer=inits,
    )
    return _model(graph, "tile triage: keep_logit > 0 means downlink the 128x128 RGB tile (0..1)")


def fit_tile_head(params: dict[str, F32], workdir: Path) -> tuple[F32, F32, float]:
    """Fit the logistic-regression head on backbone features of the generated fit set (seed 1).
    Returns (head weight [1,512], head bias [1], training accuracy)."""
    from sklearn.linear_model import LogisticRegression

    from ground.model.quantize import make_session

    path = workdir / "tile_features.onnx"
    onnx.save(tile_graph(params, np.zeros((1, 1), np.float32), np.zeros(1, np.float32), True), str(path))
    session = make_session(path, threads=2)
    tiles, labels = tile_fit_set()
    features = np.concatenate([session.run(None, {"tile": tiles[i : i + 32]})[0]
                               for i in range(0, len(tiles), 32)])
    # Raw (unstandardised) features: the head then leans on high-variance directions, which INT8
    # activation quantization (one scale per tensor) preserves; standardising lost agreement.
    clf = LogisticRegression(C=TILE_HEAD_C, max_iter=5000)
    clf.fit(features, labels)
    w = clf.coef_[0].astype(np.float32)
    b = np.float32(clf.intercept_[0])
    accuracy = float(clf.score(features, labels))
    return w.reshape(1, -1), np.array([b], np.float32), accuracy


def multi_input_graph() -> onnx.ModelProto:
    """``a`` float16 [2,3], ``b`` int64 [2,3] -> ``sum`` float32 = float(a)+float(b), ``argmax`` int64 [2]."""
    nodes = [
        helper.make_node("Cast", ["a"], ["a32"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["b"], ["b32"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["a32", "b32"], ["sum"]),
        helper.make_node("ArgMax", ["sum"], ["argmax"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "multi_input",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT16, [2, 3]),
         helper.make_tensor_value_info("b", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("argmax", TensorProto.INT64, [2])],
    )
    return _model(graph, "test model: two inputs of different dtypes, two outputs of different dtypes")


def uint8_mean_graph() -> onnx.ModelProto:
    """``pixels`` uint8 [N,H,W] -> ``mean`` float32 [N], the mean pixel value of each image."""
    nodes = [
        helper.make_node("Cast", ["pixels"], ["p32"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["p32"], ["mean"], axes=[1, 2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "uint8_mean",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["N", "H", "W"])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N"])],
    )
    return _model(graph, "test model: uint8 input with three dynamic axes, mean pixel value per image")


# ---------------------------------------------------------------------------------------------------
# Registry writing
# ---------------------------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _version_dir(root: Path, name: str) -> Path:
    path = root / name / VERSION
    path.mkdir(parents=True, exist_ok=True)
    return path


def _save(model: onnx.ModelProto, root: Path, name: str) -> Path:
    path = _version_dir(root, name) / MODEL_FILE
    path.write_bytes(model.SerializeToString(deterministic=True))
    return path


def _accuracy(path: Path, x: F32, y: npt.NDArray[np.int64]) -> float:
    from ground.model.quantize import make_session

    logits = make_session(path, threads=2).run(None, {"image": x})[0]
    return float(np.mean(np.argmax(logits, axis=1) == y))


def digits_accuracy(path: Path) -> float:
    """Held-out (360-image) top-1 accuracy of a digits model file, with ONNX Runtime."""
    split = digits_split()
    return _accuracy(path, split.x_test, split.y_test)


def _base_provenance() -> dict[str, str]:
    return {"builder": "tools/build_models.py", "onnx_opset": str(OPSET)}


def build_digits(root: Path) -> None:
    """Train, export, quantize and write ``digits-fp32`` and ``digits-int8``."""
    import sklearn

    split = digits_split()
    _log(f"digits: training on {len(split.y_train)} images ({DIGITS_EPOCHS} epochs)...")
    params = train_digits(split)
    fp32_path = _save(digits_graph(params), root, "digits-fp32")
    acc32 = _accuracy(fp32_path, split.x_test, split.y_test)
    data = (
        f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__}), pixel/16; stratified "
        f"train_test_split(test_size={DIGITS_TEST_FRACTION}, random_state={SEED}): "
        f"{len(split.y_train)} train / {len(split.y_test)} held out"
    )
    prov = _base_provenance() | {
        "training_data": data,
        "training": f"numpy {np.__version__} im2col CNN, softmax cross-entropy, Adam lr {DIGITS_LR}, "
        f"batch {DIGITS_BATCH}, {DIGITS_EPOCHS} epochs, seed {SEED}",
        "held_out_accuracy": f"{acc32:.4f}",
        "weights": "trained",
    }
    write_manifest(
        build_manifest(fp32_path, name="digits-fp32", version=VERSION, quantization="fp32",
                       description="8x8 handwritten digit classifier (image = pixel/16, [N,1,8,8]) -> logits "
                       "[N,10]; tiny model for latency tests", provenance=prov),
        fp32_path.parent,
    )
    _log(f"digits-fp32: held-out accuracy {acc32:.4f}")

    int8_path = _version_dir(root, "digits-int8") / MODEL_FILE
    quantize_model(fp32_path, int8_path, digits_calibration(), threads=2, bench_seconds=0.2)
    acc8 = _accuracy(int8_path, split.x_test, split.y_test)
    prov8 = _base_provenance() | {
        "source_model": "digits-fp32/1.0.0",
        "source_sha256": sha256_file(fp32_path),
        "quantizer": "ground.quantize static QDQ, per-channel int8 weights, uint8 activations, MinMax",
        "calibration": f"first {DIGITS_CALIB_SAMPLES} training images of the digits split",
        "training_data": data,
        "held_out_accuracy": f"{acc8:.4f}",
        "weights": "trained, post-training quantized",
    }
    write_manifest(
        build_manifest(int8_path, name="digits-int8", version=VERSION, quantization="int8-qdq",
                       description="digits-fp32 quantized to INT8 (static QDQ); same interface",
                       provenance=prov8),
        int8_path.parent,
    )
    _log(f"digits-int8: held-out accuracy {acc8:.4f} (drop {acc32 - acc8:+.4f})")


def build_tile(root: Path) -> None:
    """Build, fit the head of, quantize and write ``tile-fp32`` and ``tile-int8``."""
    params = tile_backbone_params()
    with tempfile.TemporaryDirectory(prefix="orbitd-tile-") as tmp:
        _log("tile: fitting the head on generated tiles...")
        head_w, head_b, fit_acc = fit_tile_head(params, Path(tmp))
    fp32_path = _save(tile_graph(params, head_w, head_b), root, "tile-fp32")
    n_params = sum(int(a.size) for a in params.values()) + head_w.size + head_b.size
    from ground.model.quantize import make_session

    tiles, keep = tile_validation()
    logits = make_session(fp32_path, threads=2).run(None, {"tile": tiles})[0][:, 0]
    val_acc = float(np.mean((logits > 0) == keep))
    prov = _base_provenance() | {
        "weights": f"7 conv layers random (He normal, numpy default_rng seed {SEED + 1}); logistic-regression "
        f"head (scikit-learn) fitted on {TILE_FIT_SAMPLES} generated tiles (seed {TILE_FIT_SEED}), label "
        f"keep = cloud cover < {TILE_KEEP_MAX_CLOUD}",
        "parameters": str(n_params),
        "head_fit_accuracy": f"{fit_acc:.4f}",
        "generated_validation_accuracy": f"{val_acc:.4f} ({TILE_VALIDATION_SAMPLES} generated tiles, seed "
        f"{TILE_VALIDATION_SEED})",
        "purpose": "compute/latency stand-in for onboard tile triage (Phi-Sat-1 style); not trained on "
        "real imagery",
    }
    write_manifest(
        build_manifest(fp32_path, name="tile-fp32", version=VERSION, quantization="fp32",
                       description="tile triage CNN: RGB tile [N,3,128,128] in 0..1 -> keep_logit [N,1] "
                       "(> 0: worth downlinking)", provenance=prov),
        fp32_path.parent,
    )
    _log(f"tile-fp32: {n_params} parameters, head fit accuracy {fit_acc:.3f}, generated val {val_acc:.3f}")
    int8_path = _version_dir(root, "tile-int8") / MODEL_FILE
    report = quantize_model(fp32_path, int8_path, tile_calibration(), threads=2, bench_seconds=0.5)
    logits8 = make_session(int8_path, threads=2).run(None, {"tile": tiles})[0][:, 0]
    val_acc8 = float(np.mean((logits8 > 0) == keep))
    prov8 = prov | {
        "source_model": "tile-fp32/1.0.0",
        "source_sha256": sha256_file(fp32_path),
        "quantizer": "ground.quantize static QDQ, per-channel int8 weights, uint8 activations, MinMax",
        "calibration": f"{TILE_CALIB_SAMPLES} generated tiles (seed {TILE_CALIB_SEED})",
        "generated_validation_accuracy": f"{val_acc8:.4f} ({TILE_VALIDATION_SAMPLES} generated tiles, seed "
        f"{TILE_VALIDATION_SEED})",
    }
    write_manifest(
        build_manifest(int8_path, name="tile-int8", version=VERSION, quantization="int8-qdq",
                       description="tile-fp32 quantized to INT8 (static QDQ); same interface",
                       provenance=prov8),
        int8_path.parent,
    )
    _log(f"tile-int8: {report.size_int8_bytes} bytes, {report.speedup:.2f}x FP32 at 2 threads, "
         f"decision agreement {report.top1_agreement}, generated val {val_acc8:.3f}")


def build_test_models(root: Path) -> None:
    """Write ``multi-input`` and ``uint8-mean``."""
    specs: list[tuple[str, Callable[[], onnx.ModelProto], str]] = [
        ("multi-input", multi_input_graph,
         "test model: a float16 [2,3] + b int64 [2,3] -> sum float32 [2,3], argmax int64 [2]"),
        ("uint8-mean", uint8_mean_graph, "test model: pixels uint8 [N,H,W] -> mean float32 [N]"),
    ]
    for name, make, description in specs:
        path = _save(make(), root, name)
        write_manifest(
            build_manifest(path, name=name, version=VERSION, quantization="fp32", description=description,
                           provenance=_base_provenance() | {"weights": "none (arithmetic graph)"}),
            path.parent,
        )
        _log(f"{name}: written")


BUILDERS: dict[str, Callable[[Path], None]] = {
    "digits": build_digits,
    "tile": build_tile,
    "test": build_test_models,
}


def build_all(root: Path, only: list[str] | None = None) -> None:
    """Build the selected model families (default all) into ``root`` and rewrite its SHA256SUMS."""
    root.mkdir(parents=True, exist_ok=True)
    for name in only or list(BUILDERS):
        BUILDERS[name](root)
    write_sha256sums(root)


def check(root: Path) -> int:
    """Rebuild into a temp dir and compare every .onnx sha256 with ``root``; 0 when all match."""
    with tempfile.TemporaryDirectory(prefix="orbitd-models-") as tmp:
        fresh = Path(tmp)
        build_all(fresh)
        want = sha256sums_text(root)
        got = sha256sums_text(fresh)
    if want == got:
        _log("all rebuilt models match the committed sha256s")
        return 0
    _log("rebuilt models differ:\n--- committed\n" + want + "--- rebuilt\n" + got)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild the bundled orbitd models.")
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="registry root (default models/)")
    parser.add_argument("--only", action="append", choices=sorted(BUILDERS), help="build only these")
    parser.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare sha256s")
    parser.add_argument("--write-calib", nargs=2, metavar=("MODEL", "PATH"),
                        help="write the calibration .npz of 'digits' or 'tile' to PATH and exit")
    args = parser.parse_args(argv)
    if args.write_calib:
        kind, target = args.write_calib
        makers = {"digits": digits_calibration, "tile": tile_calibration}
        if kind not in makers:
            parser.error("--write-calib MODEL must be 'digits' or 'tile'")
        np.savez(target, allow_pickle=False, **makers[kind]())
        _log(f"wrote {target}")
        return 0
    if args.check:
        return check(args.out)
    build_all(args.out, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
