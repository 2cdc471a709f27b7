"""ground.model.quantize on small real models: static QDQ structure, per-channel weights, agreement figures
checked against our own ONNX Runtime runs, the refusal of dynamic quantization for conv nets, the
CLI (exit codes, JSON report, manifest) and calibration-set validation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ground.model.cli import quantize_main as main
from ground.model.quantize import (
    CalibrationError,
    QuantizationRefused,
    quantize_model,
)
from link.manifest import ModelManifest


def _conv_classifier(path: Path) -> None:
    """Conv(1->8) ReLU Conv(8->16, stride 2) ReLU GlobalAveragePool Flatten Gemm(16->5), random weights."""
    rng = np.random.default_rng(11)
    inits = {
        "w1": rng.normal(0, 0.4, (8, 1, 3, 3)),
        "b1": rng.normal(0, 0.1, 8),
        "w2": rng.normal(0, 0.15, (16, 8, 3, 3)),
        "b2": rng.normal(0, 0.1, 16),
        "w3": rng.normal(0, 0.5, (5, 16)),
        "b3": rng.normal(0, 0.1, 5),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _matmul_model(path: Path) -> None:
    rng = np.random.default_rng(12)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])],
        initializer=[numpy_helper.from_array(rng.normal(0, 0.1, (64, 32)).astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _calib(n: int = 64) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(13).uniform(0, 1, (n, 1, 16, 16)).astype(np.float32)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    _conv_classifier(path)
    return path


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_static_qdq_structure_and_report(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny8.onnx"
    calib = _calib()
    report = quantize_model(tiny, out, calib, bench_seconds=0.05)
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = _initializers(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in (n for n in model.graph.node if n.op_type == "Conv"):
        # Each conv reads its weight through a DequantizeLinear of an int8 per-channel tensor.
        dq = producers[node.input[1]]
        assert dq.op_type == "DequantizeLinear"
        weight, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert weight.dtype == np.int8
        assert scale.shape == (weight.shape[0],)
        # Activations are uint8 (the zero point type of the data input's DequantizeLinear).
        act_dq = producers[node.input[0]]
        assert inits[act_dq.input[2]].dtype == np.uint8
    assert report.mode == "static-qdq" and report.activations == "uint8"
    assert report.quantized_compute_nodes == 3 and report.float_compute_nodes == 0
    assert report.size_fp32_bytes == tiny.stat().st_size
    assert report.size_int8_bytes == out.stat().st_size
    assert report.output_sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert report.fp32_inf_s > 0 and report.int8_inf_s > 0
    assert report.speedup == pytest.approx(report.int8_inf_s / report.fp32_inf_s)
    # Agreement figures against our own runs of both models.
    a = ort.InferenceSession(str(tiny), providers=["CPUExecutionProvider"]).run(None, calib)[0]
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, calib)[0]
    assert report.calib_samples == 64
    assert report.top1_agreement == pytest.approx(np.mean(a.argmax(1) == b.argmax(1)))
    assert report.max_abs_diff == pytest.approx(np.abs(a - b).max(), rel=1e-5)
    assert report.mean_abs_diff == pytest.approx(np.abs(a - b).mean(), rel=1e-5)
    assert report.max_abs_diff is not None and report.max_abs_diff > 0  # it really is quantized
    assert report.top1_agreement is not None and report.top1_agreement >= 0.8


def test_no_per_channel_gives_one_scale_per_weight(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny8_pt.onnx"
    quantize_model(tiny, out, _calib(16), per_channel=False, activations="int8", bench_seconds=0.02)
    model = onnx.load(str(out))
    inits = _initializers(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert inits[producers[conv.input[1]].input[1]].size == 1
    assert inits[producers[conv.input[0]].input[2]].dtype == np.int8


def test_dynamic_quantization_of_conv_net_is_refused(tiny: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dyn.onnx"
    with pytest.raises(QuantizationRefused, match=r"ConvInteger.*SLOWER than FP32"):
        quantize_model(tiny, out, None, dynamic=True)
    assert not out.exists()
    assert main([str(tiny), "--dynamic", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refusing dynamic quantization of a convolutional network" in err and "--calib" in err
    assert not out.exists()


def test_dynamic_quantization_allowed_without_convolutions(tmp_path: Path) -> None:
    src = tmp_path / "mm.onnx"
    _matmul_model(src)
    out = tmp_path / "mm8.onnx"
    report = quantize_model(src, out, None, dynamic=True, bench_seconds=0.02)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
    assert report.mode == "dynamic" and report.top1_agreement is None


def test_cli_writes_output_manifest_and_json(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calib_path = tmp_path / "calib.npz"
    np.savez(calib_path, x=_calib(32)["x"])
    out = tmp_path / "registry" / "tiny-int8" / "2.0.0" / "model.onnx"
    rc = main([str(tiny), "--calib", str(calib_path), "-o", str(out), "--manifest", "--json",
               "--bench-seconds", "0.02", "--threads", "1"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    manifest = ModelManifest.model_validate_json((out.parent / "manifest.json").read_text())
    assert (manifest.name, manifest.version, manifest.quantization) == ("tiny-int8", "2.0.0", "int8-qdq")
    assert manifest.sha256 == hashlib.sha256(out.read_bytes()).hexdigest() == report["output_sha256"]
    assert manifest.inputs[0].name == "x" and manifest.inputs[0].shape == ["N", 1, 16, 16]
    assert manifest.provenance["source_sha256"] == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert report["threads"] == 1 and report["calib_samples"] == 32


def test_calibration_set_must_fit_the_model(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad.onnx"
    with pytest.raises(CalibrationError, match="lacks input"):
        quantize_model(tiny, out, {"image": _calib()["x"]})
    with pytest.raises(CalibrationError, match="shape"):
        quantize_model(tiny, out, {"x": np.zeros((4, 1, 8, 8), np.float32)})
    with pytest.raises(CalibrationError, match="calibration set"):
        quantize_model(tiny, out, None)
    with pytest.raises(CalibrationError, match="int64"):
        quantize_model(tiny, out, {"x": np.zeros((4, 1, 16, 16), np.int64)})


def test_manifest_needs_a_name_and_version(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calib_path = tmp_path / "calib.npz"
    np.savez(calib_path, x=_calib(8)["x"])
    out = tmp_path / "plain.onnx"
    assert main([str(tiny), "--calib", str(calib_path), "-o", str(out), "--manifest"]) == 2
    assert "--name and --version" in capsys.readouterr().err
    assert not out.exists()
