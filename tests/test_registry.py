"""flight.registry: hash checks at scan and at load, ACTIVE/PREVIOUS markers, version order,
check_inputs reasons, and execution-provider fallback to CPU. Real files, real ONNX Runtime."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from flight.registry import ACTIVE_FILE, INSTALL_PREFIX, ModelError, ModelRegistry, check_inputs, version_key
from ground.model.files import build_manifest, write_manifest
from link.manifest import MANIFEST_FILE, MODEL_FILE, ModelManifest, TensorSpec


def add_model(root: Path, name: str, version: str, offset: float = 0.0) -> Path:
    """``y = a + b + offset`` over float32 [N, 3] (N dynamic), with its manifest."""
    const = helper.make_tensor("c", TensorProto.FLOAT, [1], [offset])
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Add", ["s", "c"], ["y"])],
        name,
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [const],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    directory = root / name / version
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / MODEL_FILE))
    write_manifest(build_manifest(directory / MODEL_FILE, name=name, version=version), directory)
    return directory


def feeds(n: int = 2) -> dict[str, np.ndarray]:
    a = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
    return {"a": a, "b": 10 * a}


def test_clean_scan_and_manifest_hash_is_the_files_sha256(tmp_path: Path) -> None:
    d = add_model(tmp_path, "adder", "1.0.0")
    reg = ModelRegistry(tmp_path, providers=["CPUExecutionProvider"])
    assert reg.scan() == []
    entry = reg.resolve("adder")
    assert entry.manifest.sha256 == hashlib.sha256((d / MODEL_FILE).read_bytes()).hexdigest()
    session = reg.session(entry, 1)
    x = feeds()
    y = session.run(None, x)[0]
    np.testing.assert_array_equal(y, x["a"] + x["b"])


def test_sha_mismatch_detected_at_scan(tmp_path: Path) -> None:
    d = add_model(tmp_path, "adder", "1.0.0")
    with (d / MODEL_FILE).open("ab") as f:
        f.write(b"\0")  # one byte more than the manifest's file
    reg = ModelRegistry(tmp_path)
    problems = reg.scan()
    assert len(problems) == 1 and problems[0].startswith("adder/1.0.0: sha256 mismatch")
    with pytest.raises(ModelError, match=r"model adder/1\.0\.0 is not loadable: sha256 mismatch"):
        reg.resolve("adder")


def test_sha_mismatch_detected_at_load_time(tmp_path: Path) -> None:
    """The file is swapped after the scan (a valid model, but not the one the manifest names)."""
    d = add_model(tmp_path, "adder", "1.0.0", offset=0.0)
    reg = ModelRegistry(tmp_path)
    assert reg.scan() == []
    entry = reg.resolve("adder")
    other = add_model(tmp_path / "elsewhere", "adder", "1.0.0", offset=1000.0)
    (d / MODEL_FILE).write_bytes((other / MODEL_FILE).read_bytes())
    with pytest.raises(ModelError, match="sha256 mismatch at load time"):
        reg.session(entry, 1)
    with pytest.raises(ModelError, match="not loadable: sha256 mismatch at load time"):
        reg.resolve("adder")


def test_session_is_cached_per_thread_count(tmp_path: Path) -> None:
    d = add_model(tmp_path, "adder", "1.0.0")
    reg = ModelRegistry(tmp_path)
    reg.scan()
    entry = reg.resolve("adder")
    s1 = reg.session(entry, 1)
    assert reg.session(entry, 1) is s1
    assert reg.session(entry, 2) is not s1
    # the cached session keeps running the verified bytes even if the file changes afterwards
    (d / MODEL_FILE).write_bytes(b"garbage")
    assert reg.session(entry, 1) is s1


def test_version_order_is_numeric_and_skips_broken_versions(tmp_path: Path) -> None:
    assert sorted(["1.10.0", "1.9.0", "1.2.0", "0.9"], key=version_key) == ["0.9", "1.2.0", "1.9.0", "1.10.0"]
    for v in ("1.2.0", "1.9.0", "1.10.0"):
        add_model(tmp_path, "adder", v, offset=float(v.split(".")[1]))
    reg = ModelRegistry(tmp_path)
    reg.scan()
    assert reg.active_version("adder") == "1.10.0"  # not "1.9.0" as a string sort would say
    (tmp_path / "adder" / "1.10.0" / MODEL_FILE).write_bytes(b"tampered")
    reg.scan()
    assert reg.active_version("adder") == "1.9.0"
    with pytest.raises(ModelError, match=r"has no version '7\.0\.0'"):
        reg.resolve("adder", "7.0.0")
    with pytest.raises(ModelError, match=r"unknown model 'nope' \(onboard: adder\)"):
        reg.resolve("nope")


def test_active_and_previous_markers(tmp_path: Path) -> None:
    for i, v in enumerate(("1.0.0", "2.0.0", "3.0.0")):
        add_model(tmp_path, "adder", v, offset=float(i))
    reg = ModelRegistry(tmp_path)
    reg.scan()
    marker, prev = tmp_path / "adder" / "ACTIVE", tmp_path / "adder" / "PREVIOUS"
    with pytest.raises(ModelError, match="no previous version"):
        reg.rollback("adder")
    assert reg.activate("adder", "1.0.0") == "3.0.0"
    assert marker.read_text() == "1.0.0\n" and prev.read_text() == "3.0.0\n"
    assert reg.resolve("adder").manifest.version == "1.0.0"
    reg.activate("adder", "2.0.0")
    assert (marker.read_text(), prev.read_text()) == ("2.0.0\n", "1.0.0\n")
    assert reg.rollback("adder") == "1.0.0"
    assert (marker.read_text(), prev.read_text()) == ("1.0.0\n", "2.0.0\n")
    # a fresh registry reads the markers from disk
    fresh = ModelRegistry(tmp_path)
    fresh.scan()
    assert fresh.active_version("adder") == "1.0.0"
    assert [m["version"] for m in fresh.listing() if m["active"]] == ["1.0.0"]
    # a marker naming a version that is not onboard falls back to the highest
    marker.write_text("9.9.9\n")
    assert fresh.active_version("adder") == "3.0.0"
    with pytest.raises(ModelError):
        reg.activate("adder", "4.0.0")


def test_misplaced_missing_and_unreadable_manifests(tmp_path: Path) -> None:
    d = add_model(tmp_path, "adder", "1.0.0")
    wrong = tmp_path / "adder" / "2.0.0"
    wrong.mkdir()
    (wrong / MANIFEST_FILE).write_text((d / MANIFEST_FILE).read_text())  # says 1.0.0, lives in 2.0.0
    missing = add_model(tmp_path, "gone", "1.0.0")
    (missing / MODEL_FILE).unlink()
    (tmp_path / "junk" / "1").mkdir(parents=True)
    (tmp_path / "junk" / "1" / MANIFEST_FILE).write_text("{not json")
    problems = ModelRegistry(tmp_path).scan()
    assert any("manifest says adder/1.0.0 but lives in" in p for p in problems)
    assert "gone/1.0.0: model.onnx is missing" in problems
    assert any(p.endswith("junk/1/manifest.json: unreadable manifest") for p in problems)
    assert ModelRegistry(tmp_path / "absent").scan() == [f"models directory {tmp_path / 'absent'} does not exist"]


def test_check_inputs_reasons() -> None:
    manifest = ModelManifest(
        name="m", version="1", sha256="0" * 64, size_bytes=1,
        inputs=[TensorSpec(name="image", dtype="float32", shape=[None, 1, 8, 8]),
                TensorSpec(name="mask", dtype="uint8", shape=["batch", 4])],
        outputs=[TensorSpec(name="y", dtype="float32", shape=[None])],
    )
    ok: dict[str, np.ndarray] = {"image": np.zeros((5, 1, 8, 8), np.float32), "mask": np.zeros((5, 4), np.uint8)}
    check_inputs(manifest, ok)  # dynamic axes accept any size
    cases: dict[str, dict[str, np.ndarray]] = {
        "missing input(s) mask (declared: image, mask)": {"image": ok["image"]},
        "missing input(s) mask; unexpected input(s) masque": {"image": ok["image"], "masque": ok["mask"]},
        "input 'image' must be float32, got float64": {**ok, "image": ok["image"].astype(np.float64)},
        "input 'image' must have rank 4 [None, 1, 8, 8], got [5, 64]": {**ok, "image": np.zeros((5, 64), np.float32)},
        "input 'image' axis 2 must be 8 (shape [None, 1, 8, 8]), got [5, 1, 4, 16]":
            {**ok, "image": np.zeros((5, 1, 4, 16), np.float32)},
    }
    for reason, arrays in cases.items():
        with pytest.raises(ModelError) as info:
            check_inputs(manifest, arrays)
        assert str(info.value).startswith("model m/1: ") and reason in str(info.value), str(info.value)


def test_provider_fallback_skips_unavailable_providers_and_uses_cpu(tmp_path: Path) -> None:
    add_model(tmp_path, "adder", "1.0.0", offset=0.5)
    wanted = ["NoSuchExecutionProvider", "TensorrtExecutionProvider", "CUDAExecutionProvider"]
    reg = ModelRegistry(tmp_path, providers=wanted)
    reg.scan()
    have = set(ort.get_available_providers())
    expected = [p for p in wanted if p in have] + ["CPUExecutionProvider"]
    assert reg.available_providers() == expected
    assert "NoSuchExecutionProvider" not in reg.available_providers()
    session = reg.session(reg.resolve("adder"), 1)
    if expected == ["CPUExecutionProvider"]:  # this machine: no GPU build of ONNX Runtime
        assert session.get_providers()[0] == "CPUExecutionProvider"
        assert reg.providers_in_use() == ["CPUExecutionProvider"]
    x = feeds(3)
    np.testing.assert_allclose(session.run(None, x)[0], x["a"] + x["b"] + 0.5)


def staged(tmp_path: Path, name: str, version: str, offset: float) -> tuple[Path, ModelManifest]:
    """A model file and its manifest outside the registry, as the uplink holds them after verifying."""
    directory = add_model(tmp_path / "staging", name, version, offset)
    manifest = ModelManifest.model_validate_json((directory / MANIFEST_FILE).read_text())
    return directory / MODEL_FILE, manifest


def test_install_from_a_staged_file_pins_the_active_version_and_allows_rollback(tmp_path: Path) -> None:
    root = tmp_path / "models"
    reg = ModelRegistry(root)
    src, manifest = staged(tmp_path, "adder", "1.0.0", 0.0)
    entry = reg.install(src, manifest, "up1")
    assert entry.ref == "adder/1.0.0" and entry.problem is None
    assert (root / "adder" / "1.0.0" / MODEL_FILE).read_bytes() == src.read_bytes()
    assert not (root / "adder" / ACTIVE_FILE).exists()  # the first version: nothing to pin
    assert reg.active_version("adder") == "1.0.0"
    src2, manifest2 = staged(tmp_path, "adder", "2.0.0", 5.0)
    reg.install(src2, manifest2, "up2")
    assert (root / "adder" / ACTIVE_FILE).read_text().strip() == "1.0.0"  # pinned before the rename
    assert reg.active_version("adder") == "1.0.0"  # 2.0.0 sorts higher, yet is not active by itself
    assert reg.activate("adder", "2.0.0") == "1.0.0"
    y = reg.session(reg.resolve("adder"), 1).run(None, feeds())[0]
    np.testing.assert_array_equal(y, feeds()["a"] + feeds()["b"] + 5.0)
    assert reg.rollback("adder") == "1.0.0" and reg.active_version("adder") == "1.0.0"
    assert not list(root.glob(INSTALL_PREFIX + "*"))


def test_install_refuses_an_existing_version_and_a_file_that_is_not_the_manifests(tmp_path: Path) -> None:
    root = tmp_path / "models"
    reg = ModelRegistry(root)
    src, manifest = staged(tmp_path, "adder", "1.0.0", 0.0)
    reg.install(src, manifest, "up1")
    assert reg.has_version("adder", "1.0.0") and not reg.has_version("adder", "9")
    with pytest.raises(ModelError, match="already exists"):
        reg.install(src, manifest, "up2")
    other, _ = staged(tmp_path, "other", "1", 1.0)
    with pytest.raises(ModelError, match="does not hash to the manifest's sha256"):
        reg.install(other, manifest.model_copy(update={"version": "1.0.1"}), "up3")
    reg.scan()
    assert sorted(reg.models["adder"]) == ["1.0.0"] and not (root / "adder" / "1.0.1").exists()
    assert not list(root.glob(INSTALL_PREFIX + "*"))


def test_scan_deletes_what_an_interrupted_install_left(tmp_path: Path) -> None:
    add_model(tmp_path, "adder", "1.0.0")
    leftover = tmp_path / f"{INSTALL_PREFIX}up7"
    leftover.mkdir()
    (leftover / MODEL_FILE).write_bytes(b"half a model")
    reg = ModelRegistry(tmp_path)
    assert reg.scan() == []
    assert not leftover.exists() and sorted(reg.models) == ["adder"]
