"""The model registry's intake checks on whichever ONNX Runtime the board carries, without ``onnx``.

pyproject.toml asks for onnxruntime >= 1.27 on Python 3.11+ but >= 1.23.2 on Python 3.10 (PyPI's last
cp310 wheel; JetPack 6), so this module runs in both test runs of scripts/test.sh: on ORT 1.32 in the
main venv and on ORT 1.23.2 in the board install (``.venv310``). Models are written with
:mod:`flight.model_proto`'s encoder (the board has no ``onnx`` package). It shows that the probed IR
version and opset limits are the edge of what *this* ONNX Runtime loads, that the bundled models pass
them, and that a model naming an external data file outside its folder (which ORT 1.23.2 would read:
docs/models.md, "Why external data is refused") is refused before ONNX Runtime sees it.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from flight.model_intake import (
    NESTING_LOAD_BUDGET_S,
    load_problem,
    model_problems,
    runtime_graph_depth,
    runtime_limits,
    version_problems,
)
from flight.model_proto import (
    MAX_GRAPH_DEPTH,
    encode_graph,
    encode_model,
    encode_nested_ifs,
    encode_node,
    encode_tensor,
    encode_value_info,
)
from link.manifest import MODEL_FILE
from tests.support import BUNDLED, REPO

LIMITS = runtime_limits()
FLOAT = 1  # ONNX TensorProto.FLOAT


def _add_model(ir_version: int, opsets: dict[str, int], weight: bytes | None = None) -> bytes:
    """``y = Add(x, w)`` over float32 [2]; ``w`` is the encoded TensorProto ``weight`` (default: [1, 2])."""
    w = weight if weight is not None else encode_tensor("w", np.array([1.0, 2.0], dtype=np.float32))
    graph = encode_graph("add", [encode_node("Add", ["x", "w"], ["y"])], [encode_value_info("x", FLOAT, [2])],
                         [encode_value_info("y", FLOAT, [2])], [w])
    return encode_model(ir_version, opsets, graph)


def _len_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (field numbers < 16, payloads < 128 bytes)."""
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _external_weight(location: str) -> bytes:
    """TensorProto ``w`` float32 [2] whose data is in the file ``location`` (external_data = 13,
    data_location = 14: EXTERNAL = 1, as in onnx.proto)."""
    entry = _len_field(1, b"location") + _len_field(2, location.encode())
    return (bytes([1 << 3, 2, 2 << 3, FLOAT]) + _len_field(8, b"w") + _len_field(13, entry)
            + bytes([14 << 3, 1]))


def _floor(requirement: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.search(r">=\s*([0-9.]+)", requirement).group(1).split("."))  # type: ignore[union-attr]


def test_installed_onnxruntime_meets_pyprojects_floor_for_this_python() -> None:
    ort_reqs = re.findall(r'^\s*"(onnxruntime[^"]*)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    wanted = "python_version >= '3.11'" if sys.version_info >= (3, 11) else "python_version < '3.11'"
    (mine,) = [r for r in ort_reqs if wanted in r]
    installed = tuple(int(p) for p in re.findall(r"\d+", ort.__version__)[:3])
    assert installed >= _floor(mine), (ort.__version__, mine)
    assert LIMITS.onnxruntime == ort.__version__


def test_probed_limits_are_the_edge_of_what_this_onnx_runtime_loads() -> None:
    ir, top = LIMITS.max_ir_version, LIMITS.opsets[""]
    assert ir >= 8 and top >= 17  # the bundled models' IR version and opset (docs/models.md)
    assert load_problem(_add_model(ir, {"": 17})) is None
    assert load_problem(_add_model(ir + 1, {"": 17})) is not None
    assert load_problem(_add_model(ir, {"": top})) is None
    assert load_problem(_add_model(ir, {"": top + 1})) is not None
    assert version_problems(ir, {"": top}, LIMITS) == []
    too_new = version_problems(ir + 1, {"": top + 1}, LIMITS)
    assert len(too_new) == 2
    assert f"ONNX Runtime {ort.__version__}" in too_new[0] and f"at most {ir}" in too_new[0]
    assert f"at most {top}" in too_new[1]


@pytest.mark.parametrize("name", ["digits-fp32", "digits-int8", "tile-fp32", "tile-int8", "multi-input",
                                  "uint8-mean"])
def test_bundled_models_pass_the_checks_and_load(name: str) -> None:
    data = (BUNDLED / name / "1.0.0" / MODEL_FILE).read_bytes()
    outline, problems = model_problems(data, LIMITS)
    assert outline is not None and problems == []
    assert load_problem(data) is None


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "weights.bin"])
def test_external_data_is_refused_before_onnx_runtime_sees_it(location: str, tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(np.array([7.0, 7.0], dtype=np.float32).tobytes())
    data = _add_model(LIMITS.max_ir_version, {"": 17}, _external_weight(location))
    outline, problems = model_problems(data, LIMITS)
    assert outline is not None
    assert any("external file" in p and location in p for p in problems), problems
    assert load_problem(_add_model(LIMITS.max_ir_version, {"": 17})) is None  # the same model, weights inside


def test_nesting_is_limited_to_what_this_onnx_runtime_loads_promptly() -> None:
    """ORT before 1.32 needs time doubling with each nested If level (1.23.2: 12 s at 18 levels): the
    reader refuses a model one level deeper than this ORT loads within the budget."""
    depth = runtime_graph_depth()
    assert 10 <= depth <= MAX_GRAPH_DEPTH
    start = time.perf_counter()
    assert load_problem(encode_nested_ifs(depth)) is None
    assert time.perf_counter() - start < 4 * NESTING_LOAD_BUDGET_S
    assert model_problems(encode_nested_ifs(depth), LIMITS)[1] == []
    deeper = model_problems(encode_nested_ifs(depth + 1), LIMITS)
    assert deeper[0] is None and f"nested more than {depth} deep" in deeper[1][0], deeper[1]
    assert "flatten the control flow" in deeper[1][0]
    if tuple(int(p) for p in re.findall(r"\d+", ort.__version__)[:2]) <= (1, 27):  # measured slow: 12-23 s at 18 levels
        assert depth < 18
