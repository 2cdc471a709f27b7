"""Post-training INT8 quantization of an ONNX model on the ground, before it is uploaded.

The default and recommended path is *static QDQ*: ``quant_pre_process`` (shape inference + graph
optimisation), then ONNX Runtime's ``quantize_static`` with per-channel int8 weights, uint8
activations and MinMax calibration on a user-supplied calibration set. Measured on the development
machine (2 vCPU x86-64 with AVX-512 VNNI, ORT 1.31.1; /work/shared/reference/boards-and-runtime.md):

- static QDQ with uint8 activations ran a 7-conv 2.3 M-parameter CNN at 496 inf/s against 184 FP32
  (2 threads, batch 1);
- int8 activations on x86 left 11 of 20 convolutions in float in a ResNet-18-like net;
- *dynamic* quantization of convolutional nets (ConvInteger) ran 4-5x **slower** than FP32, so this
  module refuses it for any graph that contains a convolution.

Every run reports the size before/after (bytes), the throughput of both models on this machine at a
given thread count (inf/s) and how well the INT8 model agrees with the FP32 one on the calibration set.

The command line is ``ground model quantize`` (ground/model/cli.py; docs/models.md).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict

from ground.model.files import interface_specs
from link.digest import sha256_file
from link.manifest import TensorSpec

Activations = Literal["uint8", "int8"]
Feeds = dict[str, npt.NDArray[Any]]

CONV_OPS = frozenset({"Conv", "ConvTranspose"})
"""Operators whose dynamic quantization (ConvInteger) is refused."""

COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
"""Operators counted as quantized (fed by DequantizeLinear) or left in float in the report."""

DYNAMIC_CONV_REFUSAL = (
    "refusing dynamic quantization of a convolutional network: ONNX Runtime runs dynamically "
    "quantized convolutions (ConvInteger) 4-5x SLOWER than FP32 on the development machine "
    "(see /work/shared/reference/boards-and-runtime.md). Use static QDQ quantization instead: "
    "drop --dynamic and pass a calibration set with --calib DATA.npz."
)

CALIB_BATCH = 32
"""Largest batch fed at once to calibration and agreement runs when the batch axis is dynamic."""


class QuantizationRefused(ValueError):
    """The requested quantization is refused on purpose (e.g. dynamic quantization of a conv net)."""


class CalibrationError(ValueError):
    """The calibration set does not fit the model (missing input, wrong dtype/rank, uneven batches)."""


class QuantReport(BaseModel):
    """What a quantization did: sizes (bytes), throughput (inf/s) and FP32-vs-INT8 agreement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_path: str
    output_path: str
    mode: Literal["static-qdq", "dynamic"]
    activations: Activations
    per_channel: bool
    onnxruntime_version: str
    size_fp32_bytes: int
    size_int8_bytes: int
    size_ratio: float
    """size_int8_bytes / size_fp32_bytes."""
    threads: int
    batch: int
    """Samples per ``run()`` in the throughput measurement."""
    fp32_inf_s: float
    int8_inf_s: float
    speedup: float
    """int8_inf_s / fp32_inf_s on this machine at ``threads`` intra-op threads."""
    calib_samples: int
    compared_output: str | None
    top1_agreement: float | None
    """Fraction of calibration samples with the same top-1 class (argmax of the last axis); for a
    single-logit output, the same decision (logit > 0). None when no calibration data was given or
    the output is not a classifier output."""
    max_abs_diff: float | None
    mean_abs_diff: float | None
    quantized_compute_nodes: int
    """Conv/MatMul/Gemm nodes fed by DequantizeLinear (run in INT8 after ORT's QDQ fusion)."""
    float_compute_nodes: int
    """Conv/MatMul/Gemm nodes left in float."""
    manifest_path: str | None = None
    output_sha256: str


def make_session(path: Path | str, threads: int) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads and spinning off (spinning threads burn power
    and spoil measurements; boards-and-runtime.md)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def is_convolutional(model: onnx.ModelProto) -> bool:
    """True if any node of the main graph is a convolution."""
    return any(node.op_type in CONV_OPS for node in model.graph.node)


def count_compute_nodes(model: onnx.ModelProto) -> tuple[int, int]:
    """(quantized, float) Conv/MatMul/Gemm nodes: quantized means its data input comes from a
    DequantizeLinear (QDQ format) or it is an integer operator (ConvInteger, MatMulInteger, QLinear*)."""
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    quantized = 0
    floating = 0
    for node in model.graph.node:
        if node.op_type in {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"}:
            quantized += 1
        elif node.op_type in COMPUTE_OPS:
            if node.input and producers.get(node.input[0]) == "DequantizeLinear":
                quantized += 1
            else:
                floating += 1
    return quantized, floating


def load_calibration(path: Path) -> Feeds:
    """Arrays of an ``.npz`` file by name (batch along axis 0)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: np.asarray(data[name]) for name in data.files}


def _check_calibration(calib: Feeds, inputs: Sequence[TensorSpec]) -> int:
    """Validate ``calib`` against the model inputs; cast floating arrays to float32 inputs in place.
    Returns the number of samples (common size of axis 0)."""
    names = {spec.name for spec in inputs}
    missing = sorted(names - calib.keys())
    if missing:
        raise CalibrationError(
            f"calibration set lacks input(s) {missing}; it has {sorted(calib)} (an .npz maps input names "
            "to arrays with the batch along axis 0)"
        )
    counts = set()
    for spec in inputs:
        array = calib[spec.name]
        if spec.shape is not None and array.ndim != len(spec.shape):
            raise CalibrationError(
                f"calibration array {spec.name!r} has rank {array.ndim} {list(array.shape)}, "
                f"the model wants rank {len(spec.shape)} {spec.shape}"
            )
        if array.dtype != np.dtype(spec.dtype):
            if np.issubdtype(array.dtype, np.floating) and np.issubdtype(np.dtype(spec.dtype), np.floating):
                calib[spec.name] = array.astype(spec.dtype)
            else:
                raise CalibrationError(
                    f"calibration array {spec.name!r} is {array.dtype}, the model wants {spec.dtype}"
                )
        for axis, want in enumerate(spec.shape or []):
            if axis > 0 and isinstance(want, int) and array.shape[axis] != want:
                raise CalibrationError(
                    f"calibration array {spec.name!r} has shape {list(array.shape)}, "
                    f"the model wants {spec.shape}"
                )
        counts.add(array.shape[0] if array.ndim else 1)
    if len(counts) != 1:
        raise CalibrationError(f"calibration arrays disagree on the number of samples (axis 0): {counts}")
    count = counts.pop()
    if count == 0:
        raise CalibrationError("calibration set is empty")
    return count


def _batch_size(inputs: Sequence[TensorSpec], limit: int) -> int:
    """Samples per run: the fixed leading dimension if the model has one, else ``limit``."""
    for spec in inputs:
        if spec.shape and isinstance(spec.shape[0], int):
            return spec.shape[0]
    return limit


def iter_batches(calib: Feeds, inputs: Sequence[TensorSpec], limit: int = CALIB_BATCH) -> Iterator[Feeds]:
    """Feeds of at most ``limit`` samples (exactly the model's fixed batch size if it has one; a
    remainder that does not fill a fixed batch is dropped)."""
    size = _batch_size(inputs, limit)
    total = next(iter(calib.values())).shape[0]
    fixed = any(spec.shape and isinstance(spec.shape[0], int) for spec in inputs)
    for start in range(0, total, size):
        stop = min(start + size, total)
        if fixed and stop - start != size:
            break
        yield {spec.name: calib[spec.name][start:stop] for spec in inputs}


class _Reader:
    """onnxruntime CalibrationDataReader over prepared batches."""

    def __init__(self, batches: list[Feeds]) -> None:
        self._batches = batches
        self._next = 0

    def get_next(self) -> Feeds | None:
        if self._next >= len(self._batches):
            return None
        batch = self._batches[self._next]
        self._next += 1
        return batch

    def rewind(self) -> None:
        self._next = 0


def synthetic_feeds(inputs: Sequence[TensorSpec], seed: int = 0) -> Feeds:
    """One batch of seeded random inputs (dynamic dims = 1) for timing when no data is given."""
    rng = np.random.default_rng(seed)
    feeds: Feeds = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) else 1 for d in spec.shape or []]  # inputs have a rank (interface_specs)
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            feeds[spec.name] = rng.integers(0, 100, shape).astype(dtype)
    return feeds


def measure_throughput(session: ort.InferenceSession, feeds: Feeds, seconds: float, min_runs: int = 10) -> float:
    """Samples per second of ``session.run`` on ``feeds`` (batch = axis 0 of the first input),
    measured over at least ``seconds`` s and ``min_runs`` runs after 3 warm-up runs."""
    first = next(iter(feeds.values()))
    batch = int(first.shape[0]) if first.ndim else 1
    for _ in range(3):
        session.run(None, feeds)
    runs = 0
    start = time.perf_counter()
    elapsed = 0.0
    while runs < min_runs or elapsed < seconds:
        session.run(None, feeds)
        runs += 1
        elapsed = time.perf_counter() - start
    return runs * batch / elapsed


def _run_all(session: ort.InferenceSession, batches: list[Feeds]) -> npt.NDArray[Any]:
    """First output over all batches, concatenated along axis 0."""
    parts = [np.asarray(session.run(None, feeds)[0]) for feeds in batches]
    if parts[0].ndim == 0:
        return np.stack(parts)
    return np.concatenate(parts, axis=0)


def agreement(fp32: npt.NDArray[Any], int8: npt.NDArray[Any]) -> tuple[float | None, float, float]:
    """(top-1 agreement, max abs diff, mean abs diff) between two outputs of the same shape.
    Top-1 is the argmax of the last axis; for a last axis of size 1 it is the sign (logit > 0)."""
    a = fp32.astype(np.float64)
    b = int8.astype(np.float64)
    diff = np.abs(a - b)
    top1: float | None = None
    if a.ndim >= 2 and a.shape[-1] >= 2:
        top1 = float(np.mean(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))
    elif a.ndim >= 2 and a.shape[-1] == 1:
        top1 = float(np.mean((a > 0) == (b > 0)))
    return top1, float(diff.max()) if diff.size else 0.0, float(diff.mean()) if diff.size else 0.0


def quantize_model(
    src: Path,
    dst: Path,
    calib: Feeds | None,
    *,
    activations: Activations = "uint8",
    per_channel: bool = True,
    dynamic: bool = False,
    threads: int = 2,
    bench_seconds: float = 1.0,
    preprocess: bool = True,
) -> QuantReport:
    """Quantize the FP32 ONNX model ``src`` into ``dst`` and measure the result.

    Static QDQ (default) needs ``calib`` ({input name: array, batch on axis 0}). ``dynamic=True``
    is refused with :class:`QuantizationRefused` for graphs containing a convolution.
    Throughput is measured at ``threads`` intra-op threads for about ``bench_seconds`` s per model,
    on one batch of the calibration set (or seeded random inputs if ``calib`` is None).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(src))
    inputs, _ = interface_specs(model)
    if dynamic and is_convolutional(model):
        raise QuantizationRefused(DYNAMIC_CONV_REFUSAL)
    if not dynamic and calib is None:
        raise CalibrationError("static quantization needs a calibration set (--calib DATA.npz)")
    samples = _check_calibration(calib, inputs) if calib is not None else 0
    batches = list(iter_batches(calib, inputs)) if calib is not None else []
    if calib is not None and not batches:
        raise CalibrationError(f"calibration set has {samples} samples, fewer than one fixed-size batch")

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orbitd-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        if preprocess:
            try:
                quant_pre_process(str(src), str(prepared), skip_symbolic_shape=False)
            except Exception:  # symbolic shape inference fails on some graphs; ORT's advice is to skip it
                quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        else:
            prepared.write_bytes(src.read_bytes())
        act_type = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
        if dynamic:
            quantize_dynamic(str(prepared), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8)
        else:
            quantize_static(
                str(prepared),
                str(dst),
                _Reader(batches),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=act_type,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )

    quantized_nodes, float_nodes = count_compute_nodes(onnx.load(str(dst)))
    fp32_session = make_session(src, threads)
    int8_session = make_session(dst, threads)
    timing_feeds = batches[0] if batches else synthetic_feeds(inputs)
    if batches and _batch_size(inputs, CALIB_BATCH) == CALIB_BATCH:
        timing_feeds = {name: array[:1] for name, array in timing_feeds.items()}
    fp32_ips = measure_throughput(fp32_session, timing_feeds, bench_seconds)
    int8_ips = measure_throughput(int8_session, timing_feeds, bench_seconds)

    top1: float | None = None
    max_diff: float | None = None
    mean_diff: float | None = None
    compared: str | None = None
    if batches:
        compared = fp32_session.get_outputs()[0].name
        top1, max_diff, mean_diff = agreement(_run_all(fp32_session, batches), _run_all(int8_session, batches))

    first = next(iter(timing_feeds.values()))
    size_in = src.stat().st_size
    size_out = dst.stat().st_size
    return QuantReport(
        input_path=str(src),
        output_path=str(dst),
        mode="dynamic" if dynamic else "static-qdq",
        activations=activations,
        per_channel=per_channel,
        onnxruntime_version=ort.__version__,
        size_fp32_bytes=size_in,
        size_int8_bytes=size_out,
        size_ratio=size_out / size_in,
        threads=threads,
        batch=int(first.shape[0]) if first.ndim else 1,
        fp32_inf_s=fp32_ips,
        int8_inf_s=int8_ips,
        speedup=int8_ips / fp32_ips,
        calib_samples=samples,
        compared_output=compared,
        top1_agreement=top1,
        max_abs_diff=max_diff,
        mean_abs_diff=mean_diff,
        quantized_compute_nodes=quantized_nodes,
        float_compute_nodes=float_nodes,
        output_sha256=sha256_file(dst),
    )
