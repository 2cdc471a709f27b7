"""The committed model files: integrity (sha256 vs manifests and SHA256SUMS), declared interfaces vs
what ONNX Runtime sees, and the arithmetic test models against numpy."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ground.model.files import ModelFileError, parse_sha256sums, verify_model_dir
from link.manifest import ModelManifest

MODELS = Path(__file__).resolve().parent.parent / "models"
EXPECTED = ["digits-fp32", "digits-int8", "multi-input", "tile-fp32", "tile-int8", "uint8-mean"]
ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
}


def _manifest(name: str) -> ModelManifest:
    return ModelManifest.model_validate_json((MODELS / name / "1.0.0" / "manifest.json").read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(MODELS / name / "1.0.0" / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", EXPECTED)
def test_manifest_matches_committed_file(name: str) -> None:
    model = MODELS / name / "1.0.0" / "model.onnx"
    manifest = _manifest(name)
    assert manifest.name == name
    assert manifest.version == "1.0.0"
    assert manifest.sha256 == _sha256(model)
    assert manifest.size_bytes == len(model.read_bytes())
    assert manifest.provenance.get("builder") == "tools/build_models.py"


def test_sha256sums_lists_every_onnx_file_with_its_digest() -> None:
    entries = {}
    for line in (MODELS / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        entries[rel] = digest
    on_disk = sorted(p.relative_to(MODELS).as_posix() for p in MODELS.rglob("*.onnx"))
    assert sorted(entries) == on_disk
    assert {f"{n}/1.0.0/model.onnx" for n in EXPECTED} <= set(entries)
    for rel, digest in entries.items():
        assert _sha256(MODELS / rel) == digest, rel


@pytest.mark.parametrize("name", EXPECTED)
def test_declared_interface_is_what_onnxruntime_sees(name: str) -> None:
    manifest = _manifest(name)
    session = _session(name)
    for specs, args in ((manifest.inputs, session.get_inputs()), (manifest.outputs, session.get_outputs())):
        assert [s.name for s in specs] == [a.name for a in args]
        for spec, arg in zip(specs, args, strict=True):
            assert spec.dtype == ORT_TYPES[arg.type]
            assert spec.shape == list(arg.shape)


def test_quantized_manifests_say_so() -> None:
    assert _manifest("digits-int8").quantization == "int8-qdq"
    assert _manifest("tile-int8").quantization == "int8-qdq"
    assert _manifest("digits-fp32").quantization == "fp32"
    assert _manifest("digits-int8").provenance["source_sha256"] == _manifest("digits-fp32").sha256
    assert _manifest("tile-int8").provenance["source_sha256"] == _manifest("tile-fp32").sha256
    # INT8 weights: the quantized tile model is well under a third of the FP32 one.
    assert _manifest("tile-int8").size_bytes < _manifest("tile-fp32").size_bytes / 3


def test_tile_model_size_and_parameter_count() -> None:
    import onnx

    model = onnx.load(str(MODELS / "tile-fp32" / "1.0.0" / "model.onnx"))
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 7
    assert 2.0e6 <= params <= 2.6e6


def test_multi_input_model_computes_sum_and_argmax() -> None:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((2, 3)).astype(np.float16)
    b = rng.integers(-50, 50, (2, 3)).astype(np.int64)
    total, argmax = _session("multi-input").run(None, {"a": a, "b": b})
    expected = a.astype(np.float32) + b.astype(np.float32)
    assert total.dtype == np.float32 and argmax.dtype == np.int64
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(argmax, np.argmax(expected, axis=1))


def test_uint8_mean_model_accepts_any_image_size() -> None:
    session = _session("uint8-mean")
    for shape in [(1, 4, 5), (3, 17, 2)]:
        pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape).astype(np.uint8)
        (mean,) = session.run(None, {"pixels": pixels})
        np.testing.assert_allclose(mean, pixels.reshape(shape[0], -1).astype(np.float64).mean(axis=1), rtol=1e-5)


def test_verify_model_dir_detects_a_changed_byte(tmp_path: Path) -> None:
    copy = tmp_path / "digits-int8"
    shutil.copytree(MODELS / "digits-int8" / "1.0.0", copy)
    assert verify_model_dir(copy) is None
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.onnx").write_bytes(bytes(data))
    reason = verify_model_dir(copy)
    assert reason is not None and "sha256" in reason


def test_parse_sha256sums_rejects_malformed_lines() -> None:
    good = "a" * 64 + "  x/1/model.onnx\n"
    assert parse_sha256sums(good) == {"x/1/model.onnx": "a" * 64}
    with pytest.raises(ModelFileError):
        parse_sha256sums("abc  x.onnx\n")
    with pytest.raises(ModelFileError):
        parse_sha256sums("A" * 64 + "  x.onnx\n")
