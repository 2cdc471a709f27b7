"""Models that can never run onboard are refused before ONNX Runtime opens them, with a fix in the reason.

No broker here: :mod:`flight.model_intake` on bytes built with ``onnx`` (tests/unrunnable_models.py), the
registry's scan and install, the uplink receiver's begin and finish, and ``check_inputs``. Real files, real
ONNX Runtime (which must agree with the reader: what the registry takes, ORT loads).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from flight import model_intake
from flight.model_intake import (
    declared_problems,
    interface,
    load_problem,
    manifest_problems,
    model_problems,
    runtime_graph_depth,
    runtime_limits,
)
from flight.model_proto import MAX_GRAPH_DEPTH, read_outline
from flight.registry import ModelError, ModelRegistry, check_inputs
from ground.model.files import ModelFileError, build_manifest, write_manifest
from link.manifest import MANIFEST_FILE, MODEL_FILE, ModelManifest, TensorSpec
from link.messages import EventKind
from link.uplink import UploadState
from tests import unrunnable_models as bad
from tests.support import BUNDLED
from tests.test_uplink_receiver import begin_payload, chunk_payload, chunks_of, events, make_receiver, progresses, send

LIMITS = runtime_limits()

REFUSED: dict[str, tuple[Callable[[Path], bytes], str]] = {
    # name: (builder, what the reason must say, including the fix)
    "external data": (bad.external_data, "save_as_external_data=False"),
    "external data in a subgraph": (lambda d: bad.external_in_subgraph(), "graph 'then' (attribute 'then_branch'"),
    "external data in a function": (lambda d: bad.external_in_function(), "in function org.example:AddW"),
    "external sparse values": (lambda d: bad.external_sparse(), "sparse initializer 'W'"),
    "custom domain": (lambda d: bad.custom_domain(), "flightd loads no custom-op library"),
    "opset too new": (lambda d: bad.opset(LIMITS.opsets[""] + 1), "onnx.version_converter.convert_version"),
    "IR version too new": (lambda d: bad.ir_version(LIMITS.max_ir_version + 1),
                           f"model.ir_version = {LIMITS.max_ir_version}"),
    "truncated": (lambda d: bad.good()[:-3], "not an ONNX model, or cut short"),
    "not ONNX": (lambda d: b"\x89PNG\r\n\x1a\n" + bytes(200), "not an ONNX model, or cut short"),
    "damaged tensor": (lambda d: bad.damaged_tensor(), "holds 12 bytes of float32 for shape [4] (needs 16)"),
    "sparse index out of range": (lambda d: bad.sparse_out_of_range(), "has an index outside its shape [4]"),
    "input of unknown rank": (lambda d: bad.unknown_rank_input(), "update_inputs_outputs_dims"),
    "sequence input": (lambda d: bad.sequence_input(), "is a sequence, not a tensor"),
    "bfloat16 input": (lambda d: bad.bfloat16_input(), "add a Cast"),
    "nested too deep": (lambda d: bad.nested(MAX_GRAPH_DEPTH + 1), "flatten the control flow"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_each_kind_is_refused_by_the_reader_with_its_fix(case: str, tmp_path: Path) -> None:
    build, says = REFUSED[case]
    _, problems = model_problems(build(tmp_path / "m"), LIMITS)
    assert problems and says in " ".join(problems), problems


def test_every_strict_prefix_of_a_model_is_refused() -> None:
    """A file cut short anywhere is refused, not parsed into a smaller model (single-opset model)."""
    data = bad.good()
    assert model_problems(data, LIMITS)[1] == []
    for cut in range(len(data)):
        assert model_problems(data[:cut], LIMITS)[1], f"prefix of {cut} of {len(data)} bytes accepted"


ACCEPTED: dict[str, Callable[[], bytes]] = {
    "good": bad.good, "local function": bad.local_function, "unknown-rank output": bad.unknown_rank_output,
    "nested as deep as ORT loads promptly": lambda: bad.nested(runtime_graph_depth()),
    "shared dims": bad.shared_dims,
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_what_the_reader_accepts_onnx_runtime_loads(case: str) -> None:
    data = ACCEPTED[case]()
    assert model_problems(data, LIMITS)[1] == []
    assert load_problem(data) is None


@pytest.mark.parametrize("case", ["custom domain", "opset too new", "IR version too new", "truncated",
                                  "nested too deep"])
def test_onnx_runtime_refuses_what_the_reader_refuses(case: str, tmp_path: Path) -> None:
    """The limits are ONNX Runtime's own: one step past them and ORT refuses the model too."""
    assert load_problem(REFUSED[case][0](tmp_path)) is not None


def test_probed_limits_are_the_edge_of_what_onnx_runtime_loads() -> None:
    assert LIMITS.onnxruntime == ort.__version__
    assert load_problem(bad.opset(LIMITS.opsets[""])) is None
    assert load_problem(bad.opset(LIMITS.opsets[""] + 1)) is not None
    assert load_problem(bad.ir_version(LIMITS.max_ir_version)) is None
    assert load_problem(bad.ir_version(LIMITS.max_ir_version + 1)) is not None
    assert {"", "ai.onnx.ml", "com.microsoft"} <= set(LIMITS.opsets)
    assert "com.acme" not in LIMITS.opsets


@pytest.mark.parametrize("name", sorted(p.name for p in BUNDLED.iterdir() if p.is_dir()))
def test_reader_interface_is_onnx_runtimes_on_bundled_models(name: str) -> None:
    data = (BUNDLED / name / "1.0.0" / MODEL_FILE).read_bytes()
    outline, problems = model_problems(data, LIMITS)
    assert outline is not None and problems == []
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    inputs, outputs, _ = interface(outline)
    for specs, args in ((inputs, session.get_inputs()), (outputs, session.get_outputs())):
        assert [s.name for s in specs] == [a.name for a in args]
        assert [f"tensor({'float' if s.dtype == 'float32' else 'double' if s.dtype == 'float64' else s.dtype})"
                for s in specs] == [a.type for a in args]
        assert [s.shape for s in specs] == [a.shape for a in args]
    reference = onnx.load_from_string(data)
    assert outline.ir_version == reference.ir_version
    declared = {o.domain if o.domain != "ai.onnx" else "": o.version for o in reference.opset_import}
    assert outline.opset_import == declared
    manifest = ModelManifest.model_validate_json((BUNDLED / name / "1.0.0" / MANIFEST_FILE).read_text())
    assert manifest_problems(manifest, outline, len(data)) == []


# ------------------------------------------------------------------------------------------- manifests


def test_manifest_must_describe_the_real_interface() -> None:
    data = bad.good()
    manifest = build_manifest(data, name="adder", version="1")
    outline = read_outline(data)
    assert manifest.ir_version == 9 and manifest.opset_import == {"": 17}
    assert manifest_problems(manifest, outline, len(data)) == []
    wrong_dtype = manifest.model_copy(update={"inputs": [TensorSpec(name="x", dtype="float64", shape=["N", 4])]})
    wrong_shape = manifest.model_copy(update={"outputs": [TensorSpec(name="y", dtype="float32", shape=["N", 5])]})
    wrong_name = manifest.model_copy(update={"inputs": [TensorSpec(name="image", dtype="float32", shape=["N", 4])]})
    fixed_batch = manifest.model_copy(update={"inputs": [TensorSpec(name="x", dtype="float32", shape=[1, 4])]})
    for wrong, says in ((wrong_dtype, "x float64 ['N', 4]] are not the model's [x float32 ['N', 4]]"),
                        (wrong_shape, "outputs [y float32 ['N', 5]] are not the model's [y float32 ['N', 4]]"),
                        (wrong_name, "inputs [image float32"), (fixed_batch, "inputs [x float32 [1, 4]]")):
        problems = manifest_problems(wrong, outline, len(data))
        assert len(problems) == 1 and says in problems[0], problems
    lying = manifest.model_copy(update={"opset_import": {"": 13}, "ir_version": 7, "size_bytes": 5})
    assert len(manifest_problems(lying, outline, len(data))) == 3


def test_manifest_of_an_unknown_rank_output_says_so_and_accepts_any_shape() -> None:
    manifest = build_manifest(bad.unknown_rank_output(), name="reshape", version="1")
    assert manifest.outputs == [TensorSpec(name="y", dtype="float32", shape=None)]
    assert manifest.outputs[0].accepts("float32", [2, 3, 4]) is None


def test_manifest_cannot_be_built_for_external_data_or_bad_inputs(tmp_path: Path) -> None:
    bad.external_data(tmp_path / "m")
    with pytest.raises(ModelFileError, match="sha256 would not cover"):
        build_manifest(tmp_path / "m" / "model.onnx", name="ext", version="1")
    with pytest.raises(ModelFileError, match="has no declared shape"):
        build_manifest(bad.unknown_rank_input(), name="u", version="1")


def test_begin_is_judged_on_its_manifest_alone() -> None:
    manifest = build_manifest(bad.good(), name="adder", version="1")
    assert declared_problems(manifest, LIMITS) == []
    newer = manifest.model_copy(update={"opset_import": {"": LIMITS.opsets[""] + 1},
                                        "ir_version": LIMITS.max_ir_version + 1})
    problems = declared_problems(newer, LIMITS)
    assert len(problems) == 2 and "IR version" in problems[0] and "opset" in problems[1]
    huge = manifest.model_copy(update={"size_bytes": LIMITS.max_model_bytes + 1})
    assert "-byte limit" in declared_problems(huge, LIMITS)[0]
    rankless = manifest.model_copy(update={"inputs": [TensorSpec(name="x", dtype="float32", shape=None)]})
    assert "no declared shape" in declared_problems(rankless, LIMITS)[0]


# -------------------------------------------------------------------------------------------- registry


def place(root: Path, name: str, data: bytes, manifest: ModelManifest | None = None) -> Path:
    """Put ``data`` in the registry as ``name/1`` with a manifest (built from a good file when the bytes
    cannot make one)."""
    directory = root / name / "1"
    directory.mkdir(parents=True)
    (directory / MODEL_FILE).write_bytes(data)
    if manifest is None:
        manifest = build_manifest(bad.good(), name=name, version="1").model_copy(
            update={"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)})
    write_manifest(manifest, directory)
    return directory


def test_scan_marks_unrunnable_files_without_opening_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files placed by hand: each bad one is not loadable with our reason, and ORT never saw them."""
    root = tmp_path / "models"
    side = tmp_path / "side"
    bad.external_data(side)
    cases = {name: build(side) for name, (build, _) in REFUSED.items()}
    for i, data in enumerate(cases.values()):
        place(root, f"m{i}", data)
    place(root, "ok", bad.good(), build_manifest(bad.good(), name="ok", version="1"))
    (root / "m0" / "1" / "weights.bin").write_bytes((side / "weights.bin").read_bytes())  # the side file is there
    opened: list[object] = []
    real = ort.InferenceSession

    def spy(*args: object, **kwargs: object) -> ort.InferenceSession:
        opened.append(args[0])
        return real(*args, **kwargs)

    registry = ModelRegistry(root)
    assert registry.limits.opsets  # probe ONNX Runtime first: the probe's own tiny models are not watched
    monkeypatch.setattr(ort, "InferenceSession", spy)
    problems = registry.scan()
    assert opened == []
    assert len(problems) == len(cases)
    for name, (_, says) in REFUSED.items():
        ref = f"m{list(cases).index(name)}"
        with pytest.raises(ModelError, match="is not loadable") as info:
            registry.resolve(ref)
        assert says in str(info.value), (name, str(info.value))
    registry.session(registry.resolve("ok"), 1)
    assert len(opened) == 1


def test_install_refuses_each_kind_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "models"
    registry = ModelRegistry(root)
    for i, (name, (build, says)) in enumerate(REFUSED.items()):
        data = build(tmp_path / f"src{i}")
        source = tmp_path / f"src{i}.onnx"
        source.write_bytes(data)
        manifest = build_manifest(bad.good(), name=f"m{i}", version="1").model_copy(
            update={"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)})
        with pytest.raises(ModelError, match=f"model m{i}/1 refused") as info:
            registry.install(source, manifest, f"up{i}")
        assert says in str(info.value), (name, str(info.value))
    assert not root.exists() or sorted(p.name for p in root.iterdir()) == []


def test_install_refuses_a_manifest_with_the_wrong_dtype(tmp_path: Path) -> None:
    source = tmp_path / "adder.onnx"
    source.write_bytes(bad.good())
    manifest = build_manifest(source, name="adder", version="1")
    lying = manifest.model_copy(update={"inputs": [TensorSpec(name="x", dtype="float16", shape=["N", 4])]})
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(ModelError, match=r"the manifest's inputs \[x float16 \['N', 4\]\] are not the model's"):
        registry.install(source, lying, "up1")
    assert registry.install(source, manifest, "up2").ref == "adder/1"


def test_unknown_rank_output_is_installed_and_runs(tmp_path: Path) -> None:
    source = tmp_path / "reshape.onnx"
    source.write_bytes(bad.unknown_rank_output())
    registry = ModelRegistry(tmp_path / "models")
    entry = registry.install(source, build_manifest(source, name="reshape", version="1"), "up1")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    feeds: dict[str, np.ndarray] = {"x": x, "shape": np.array([4, 2], dtype=np.int64)}
    check_inputs(entry.manifest, feeds)
    (y,) = registry.session(entry, 1).run(None, feeds)
    np.testing.assert_array_equal(y, x.reshape(4, 2))


def test_jobs_whose_inputs_disagree_on_a_shared_symbolic_dim_are_refused() -> None:
    manifest = build_manifest(bad.shared_dims(), name="pair", version="1")
    ok = {"a": np.zeros((3, 4), np.float32), "b": np.ones((3, 4), np.float32)}
    check_inputs(manifest, ok)
    with pytest.raises(ModelError, match=r"dimension 'N' is 3 in input 'a' axis 0 but 2 in input 'b' axis 0"):
        check_inputs(manifest, {**ok, "b": np.ones((2, 4), np.float32)})
    square = manifest.model_copy(update={"inputs": [TensorSpec(name="a", dtype="float32", shape=["K", "K"]),
                                                    TensorSpec(name="b", dtype="float32", shape=[None, None])]})
    check_inputs(square, {"a": np.zeros((2, 2), np.float32), "b": np.zeros((2, 7), np.float32)})  # None is free
    with pytest.raises(ModelError, match=r"'K' is 2 in input 'a' axis 0 but 3 in input 'a' axis 1"):
        check_inputs(square, {"a": np.zeros((2, 3), np.float32), "b": np.zeros((2, 2), np.float32)})


# ---------------------------------------------------------------------------------------------- uplink


def upload(rx: object, uid: str, data: bytes, manifest: ModelManifest) -> list[tuple[str, bytes]]:
    out = send(rx, uid, begin_payload(uid, manifest, 1024))  # type: ignore[arg-type]
    for i, part in enumerate(chunks_of(data, 1024)):
        out += send(rx, uid, chunk_payload(uid, i, part))  # type: ignore[arg-type]
    return out


def test_uplink_rejects_each_kind_after_the_last_chunk_with_the_reason_on_the_wire(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rx = make_receiver(tmp_path)
    for i, (name, (build, says)) in enumerate(REFUSED.items()):
        data = build(tmp_path / f"src{i}")
        manifest = build_manifest(bad.good(), name=f"m{i}", version="1").model_copy(
            update={"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data), "opset_import": {},
                    "ir_version": None})
        with caplog.at_level(logging.ERROR, logger="flightd.uplink"):
            out = upload(rx, f"u{i}", data, manifest)
        final = progresses(out, f"u{i}")[-1]
        assert final.state is UploadState.REJECTED and says in (final.reason or ""), (name, final.reason)
        errors = [e for e in events(out) if e.kind is EventKind.MODEL and e.severity == "error"]
        assert len(errors) == 1 and says in errors[0].message
        assert any(says in r.getMessage() and f"u{i}" in r.getMessage() for r in caplog.records), name
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == []


def test_uplink_refuses_at_begin_what_the_manifest_already_shows(tmp_path: Path) -> None:
    rx = make_receiver(tmp_path)
    data = bad.opset(LIMITS.opsets[""] + 1)
    manifest = build_manifest(data, name="future", version="1")
    out = send(rx, "f1", begin_payload("f1", manifest, 1024))
    reply = progresses(out, "f1")[-1]
    assert reply.state is UploadState.REJECTED and "onnx.version_converter" in (reply.reason or "")
    assert "f1" not in rx.uploads and not (tmp_path / "staging" / "f1").exists()


def test_probe_runs_once_per_process() -> None:
    before = model_intake._probe.cache_info().misses
    runtime_limits(1)
    runtime_limits(2)
    assert model_intake._probe.cache_info().misses == before
