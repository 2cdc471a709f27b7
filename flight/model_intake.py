"""Which model files the registry takes: one home for the checks made on the ground before the first chunk
of an upload (``ground model upload``) and onboard before ONNX Runtime opens a file (the uplink's begin,
:meth:`flight.registry.ModelRegistry.scan` and :meth:`~flight.registry.ModelRegistry.install`).

Everything here is read from the file's bytes with :mod:`flight.model_proto` (the board has no ``onnx``
package) and compared with :class:`link.messages.ModelLimits`, what ONNX Runtime onboard loads. Each
problem is one line that says what is wrong, where, and how to fix the model:

- the file is not ONNX or is cut short (a length or message that runs past the end, no graph, no opsets);
- any tensor keeps its data in an external file (``data_location = EXTERNAL`` or ``external_data``
  entries), in the graph, a subgraph, an attribute, a sparse tensor, a model-local function or a training
  graph. flightd loads models from bytes it has hashed, so the side file could never be read, and it
  could be anywhere: ONNX Runtime before 1.27.0 read such files outside the model's folder (measured,
  docs/models.md "Why external data is refused, and the minimum onnxruntime"); ORT's in-memory address
  markers travel in the same field (microsoft/onnxruntime#28617);
- an IR version or an opset newer than ONNX Runtime onboard loads (it says "Unsupported model IR
  version" or "only *guarantees* support for models stamped with official released onnx opset versions"
  only after the whole upload);
- an operator from a domain ONNX Runtime does not implement (a custom op: flightd loads no custom-op
  library), unless the model defines it as a local function, or from a domain the model does not declare;
- a tensor whose data does not fit its declared shape and type, a sparse tensor whose indices leave its
  shape (ONNX Runtime 1.16 read past the end of one: microsoft/onnxruntime#19681), a negative dimension;
- an interface flightd cannot check jobs against: inputs or outputs that are not tensors, element types
  the link does not carry (:data:`link.tensor.SUPPORTED_DTYPES`), an input of unknown rank, no input
  (an output of unknown rank is fine: ONNX Runtime gives it a shape when it runs);
- a manifest that does not describe the file (names, dtypes, shapes, IR version, opsets);
- a file larger than ``max_model_bytes`` (uploads only; :data:`MAX_MODEL_BYTES`).

What is left to ONNX Runtime is what only it can tell (an unknown operator of a known domain, type
errors between nodes): the registry builds a session from the bytes before it installs a model, and the
ground does the same with its own ONNX Runtime before the first chunk.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import onnxruntime as ort

from flight.model_proto import (
    MAX_GRAPH_DEPTH,
    ONNX_TYPE_NAMES,
    GraphTooDeep,
    ModelOutline,
    ModelProtoError,
    ValueSpec,
    canonical_domain,
    encode_graph,
    encode_model,
    encode_nested_ifs,
    encode_node,
    encode_value_info,
    read_outline,
)
from link.manifest import ManifestDim, ModelManifest, TensorSpec
from link.messages import ModelLimits
from link.tensor import SUPPORTED_DTYPES, DType

MAX_MODEL_BYTES = 256 * 1024 * 1024
"""Largest model file an upload may carry, bytes (flightd hashes and loads it in its event loop: about a
second at 256 MB on the development machine, docs/model-uplink.md)."""

EXTERNAL_FIX = ("flightd loads a model from its one file: save it with the weights inside, "
                "onnx.save_model(onnx.load(path), new_path, save_as_external_data=False) (a model must then be "
                "under 2 GiB, protobuf's limit)")


def _domain_name(domain: str) -> str:
    return domain or "ai.onnx"


# ----------------------------------------------------------------------------------- runtime probe

_PROBE_RANGE = (1, 1000)


def _probe_model(ir_version: int, opsets: dict[str, int]) -> bytes:
    """``y = Identity(x)`` over float32 [1], stamped with ``ir_version`` and ``opsets``."""
    graph = encode_graph("probe", [encode_node("Identity", ["x"], ["y"])], [encode_value_info("x", 1, [1])],
                         [encode_value_info("y", 1, [1])])
    return encode_model(ir_version, opsets, graph)


def load_problem(data: bytes, optimize: bool = True) -> str | None:
    """None when ONNX Runtime builds a CPU session from the model bytes ``data`` (never from a path, so
    no side file is ever read), else its first line of complaint. Run only on bytes that passed
    :func:`model_problems`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for every kind of bad graph
        text = str(exc).strip()
        first = text.splitlines()[0][:300] if text else type(exc).__name__
        return f"ONNX Runtime {ort.__version__} cannot load it: {first}"
    return None


def _loads(model: bytes) -> bool:
    return load_problem(model, optimize=False) is None


def _highest(loads: Callable[[int], bool], low: int, high: int) -> int | None:
    """The highest ``v`` in [low, high] with ``loads(v)`` (which holds up to some version, then fails)."""
    if not loads(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        if loads(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _runtime_domains() -> set[str]:
    """Operator domains the installed ONNX Runtime has kernels for (any execution provider)."""
    try:
        from onnxruntime.capi.onnxruntime_pybind11_state import get_all_opkernel_def

        return {canonical_domain(k.domain) for k in get_all_opkernel_def()}
    except (ImportError, AttributeError):  # a build without the kernel listing: the domains every build has
        return {"", "ai.onnx.ml", "com.microsoft"}


@functools.cache
def _probe() -> tuple[int, tuple[tuple[str, int], ...]]:
    """(newest IR version, (domain, newest opset) pairs) that this ONNX Runtime loads, found by loading
    tiny models stamped with each version (binary search, about 50 loads, 50-90 ms): what ORT itself
    says, on whichever build the board carries."""
    ir = _highest(lambda v: _loads(_probe_model(v, {"": 13})), 3, _PROBE_RANGE[1]) or 3
    opsets = {"": _highest(_opset_loads(ir, ""), *_PROBE_RANGE) or 1}
    for domain in sorted(_runtime_domains() - {""}):
        top = _highest(_opset_loads(ir, domain), *_PROBE_RANGE)
        if top is not None:
            opsets[domain] = top
    return ir, tuple(sorted(opsets.items()))


def _opset_loads(ir: int, domain: str) -> Callable[[int], bool]:
    """Whether a model of IR version ``ir`` stamped with opset ``v`` of ``domain`` loads, as a function of v."""
    return lambda v: _loads(_probe_model(ir, {"": v} if domain == "" else {"": 13, domain: v}))


NESTING_LOAD_BUDGET_S = 0.5
"""Longest load of the nesting probe's model (:func:`runtime_graph_depth`) still counted as loading, s."""


@functools.cache
def runtime_graph_depth() -> int:
    """The deepest nesting of subgraphs (If levels) that this ONNX Runtime loads promptly: the model
    reader refuses deeper ones (:func:`model_problems`), at most :data:`flight.model_proto.MAX_GRAPH_DEPTH`.

    ONNX Runtime before 1.32 takes time that doubles with each nested If level when it builds a
    session; measured here (AMD EPYC, 2 vCPU, ``encode_nested_ifs``): 1.23.2 (PyPI's last cp310 wheel,
    the board install on Python 3.10) 0.12 s at 12 levels, 0.8 s at 14, 12 s at 18; 1.24.4, 1.26.0
    and 1.27.0 alike (1.8 / 1.9 / 0.8 s at 14, 18 / 23 / 13 s at 18); 1.32.0 under 0.03 s at 31. So
    a model accepted by the reader could hold the registry for hours. Found by loading the probe
    model 2, 4, 6, ... levels deep (then the maximum) until one fails or takes more than
    :data:`NESTING_LOAD_BUDGET_S`: about 0.2 s on 1.32, 1 s on 1.23.2, once per process."""
    depth = 0
    for levels in (*range(2, MAX_GRAPH_DEPTH, 2), MAX_GRAPH_DEPTH):
        start = time.perf_counter()
        loads = _loads(encode_nested_ifs(levels))
        if not loads or time.perf_counter() - start > NESTING_LOAD_BUDGET_S:
            break
        depth = levels
    return depth


def runtime_limits(max_model_bytes: int = MAX_MODEL_BYTES) -> ModelLimits:
    """What the ONNX Runtime installed here loads, and ``max_model_bytes`` (probed once per process)."""
    ir, opsets = _probe()
    return ModelLimits(onnxruntime=ort.__version__, max_model_bytes=max_model_bytes, max_ir_version=ir,
                       opsets=dict(opsets))


# ------------------------------------------------------------------------------------------- checks


def size_problem(size_bytes: int, limits: ModelLimits) -> str | None:
    """Why a model file of ``size_bytes`` may not be uploaded, or None."""
    if size_bytes > limits.max_model_bytes:
        return (f"model of {size_bytes} bytes exceeds the {limits.max_model_bytes}-byte limit: make it smaller "
                "(ground model quantize turns FP32 weights into INT8, a quarter of the size)")
    return None


def version_problems(ir_version: int | None, opset_import: dict[str, int], limits: ModelLimits) -> list[str]:
    """Why ONNX Runtime onboard would refuse a model of ``ir_version`` and ``opset_import`` (domain ->
    version); domains it does not implement are left to :func:`operator_problems` (only used ones matter)."""
    ort_name = f"ONNX Runtime {limits.onnxruntime}"
    out = []
    if ir_version is not None and ir_version > limits.max_ir_version:
        out.append(f"IR version {ir_version} is newer than {ort_name} loads (at most {limits.max_ir_version}): "
                   f"re-save it with an older onnx release, or set model.ir_version = {limits.max_ir_version} "
                   "if it uses nothing newer")
    for domain, version in sorted(opset_import.items()):
        top = limits.opsets.get(domain)
        if top is not None and version > top:
            fix = (f"onnx.version_converter.convert_version(model, {top}), or export with opset_version={top}"
                   if domain == "" else f"export it with {domain} opset {top} or older")
            out.append(f"opset {version} of domain {_domain_name(domain)} is newer than {ort_name} loads "
                       f"(at most {top}): convert it: {fix}")
    return out


def operator_problems(outline: ModelOutline, limits: ModelLimits) -> list[str]:
    """Operators from domains ONNX Runtime onboard does not implement (custom ops) or the model does not
    declare; one line per domain, naming its first use."""
    out: dict[str, str] = {}
    known = ", ".join(_domain_name(d) for d in sorted(limits.opsets))
    for (domain, op_type), use in outline.ops.items():
        if domain in out or (domain, op_type) in outline.functions:
            continue
        if domain not in limits.opsets:
            out[domain] = (f"operator {domain}:{op_type} ({use.where}) is from domain {domain!r}, which "
                           f"ONNX Runtime {limits.onnxruntime} onboard does not implement (it has {known}), and "
                           "flightd loads no custom-op library: replace it with standard ONNX operators, or "
                           "define it in the model as a local function (onnx.helper.make_function)")
        elif not use.declared:
            out[domain] = (f"operator {_domain_name(domain)}:{op_type} ({use.where}) is from a domain the "
                           "model's opset_import does not declare: add it (onnx.helper.make_opsetid"
                           f"({domain!r}, version))")
    return list(out.values())


def interface(outline: ModelOutline) -> tuple[list[TensorSpec], list[TensorSpec], list[str]]:
    """The model's (inputs, outputs) as manifest specs, and why flightd could not check jobs against them
    (specs that are not tensors or use an element type the link does not carry are left out)."""
    problems: list[str] = []
    inputs = [s for s in (_spec(v, "input", problems) for v in outline.inputs) if s is not None]
    outputs = [s for s in (_spec(v, "output", problems) for v in outline.outputs) if s is not None]
    for spec in inputs:
        if spec.shape is None:
            problems.append(f"input {spec.name!r} has no declared shape, so no job could be checked against "
                            "it: give it one (onnx.tools.update_model_dims.update_inputs_outputs_dims, or "
                            "export with input shapes)")
    if not outline.inputs:
        problems.append("the model has no inputs (every job carries at least one)")
    if not outline.outputs:
        problems.append("the model has no outputs")
    return inputs, outputs, problems


def _spec(value: ValueSpec, role: str, problems: list[str]) -> TensorSpec | None:
    if value.kind != "tensor":
        what = "no type" if value.kind == "none" else f"a {value.kind.replace('_', ' ')}"
        problems.append(f"{role} {value.name!r} is {what}, not a tensor: jobs carry tensors only; give the "
                        f"model tensor {role}s")
        return None
    dtype = ONNX_TYPE_NAMES.get(value.elem_type, f"type {value.elem_type}")
    if dtype not in SUPPORTED_DTYPES:
        problems.append(f"{role} {value.name!r} is {dtype}, which jobs cannot carry (they carry "
                        f"{', '.join(SUPPORTED_DTYPES)}): add a Cast to one of those at the model's edge")
        return None
    dtype_lit: DType = dtype  # type: ignore[assignment]  # checked against SUPPORTED_DTYPES above
    shape: list[ManifestDim] | None = None if value.shape is None else list(value.shape)
    if shape is not None and any(isinstance(d, int) and d < 0 for d in shape):
        problems.append(f"{role} {value.name!r} has a negative dimension {shape}")
        return None
    return TensorSpec(name=value.name, dtype=dtype_lit, shape=shape)


def model_problems(data: bytes, limits: ModelLimits) -> tuple[ModelOutline | None, list[str]]:
    """(outline, problems) of a model file's bytes: everything above but the size and the manifest.
    The outline is None when the bytes are not a model at all (then there is one problem)."""
    try:
        outline = read_outline(data, max_depth=runtime_graph_depth())
    except GraphTooDeep as exc:
        return None, [f"{exc}: ONNX Runtime {ort.__version__} onboard loads no deeper promptly "
                      f"({MAX_GRAPH_DEPTH} at most: its protobuf parser stops at 100 nested messages); flatten "
                      "the control flow (fewer If/Loop/Scan levels)"]
    except ModelProtoError as exc:
        return None, [f"not an ONNX model, or cut short ({len(data)} bytes): {exc}: export it again, or copy "
                      "the whole file (compare its size and sha256 with the original)"]
    problems: list[str] = []
    if not outline.opset_import:
        problems.append("the model declares no opset_import (cut short, or not written by onnx.save_model): "
                        "export it again")
    if outline.ir_version is None:
        problems.append("the model declares no IR version (cut short, or not written by onnx.save_model): "
                        "export it again")
    problems += version_problems(outline.ir_version, outline.opset_import, limits)
    if outline.external:
        shown = "; ".join(outline.external[:3]) + (f"; and {len(outline.external) - 3} more"
                                                    if len(outline.external) > 3 else "")
        problems.append(f"{len(outline.external)} tensor(s) keep their data in an external file ({shown}): "
                        + EXTERNAL_FIX)
    if outline.opset_import:
        problems += operator_problems(outline, limits)
    if outline.damaged:
        shown = "; ".join(outline.damaged[:3]) + (f"; and {len(outline.damaged) - 3} more"
                                                   if len(outline.damaged) > 3 else "")
        problems.append(f"tensor data that cannot be right: {shown}: the file is damaged or its exporter "
                        "is broken; export it again")
    problems += interface(outline)[2]
    return outline, problems


def manifest_problems(manifest: ModelManifest, outline: ModelOutline, size_bytes: int) -> list[str]:
    """Where ``manifest`` does not describe the file (``outline``, ``size_bytes`` long): every input and
    output by name, dtype and shape, and the IR version and opsets when the manifest declares them."""
    problems = []
    if manifest.size_bytes != size_bytes:
        problems.append(f"the manifest says {manifest.size_bytes} bytes, the file has {size_bytes}")
    inputs, outputs, _ = interface(outline)
    for role, declared, real in (("inputs", manifest.inputs, inputs), ("outputs", manifest.outputs, outputs)):
        if declared != real:
            problems.append(f"the manifest's {role} {_specs_text(declared)} are not the model's "
                            f"{_specs_text(real)}: build the manifest from the file (ground.model.files."
                            "build_manifest)")
    if manifest.ir_version is not None and manifest.ir_version != outline.ir_version:
        problems.append(f"the manifest says IR version {manifest.ir_version}, the file {outline.ir_version}")
    if manifest.opset_import and manifest.opset_import != outline.opset_import:
        problems.append(f"the manifest says opsets {manifest.opset_import}, the file {outline.opset_import}")
    return problems


def declared_problems(manifest: ModelManifest, limits: ModelLimits) -> list[str]:
    """What the satellite can refuse from a manifest alone, before any byte of the file arrives: the size,
    the declared IR version and opsets, inputs of unknown rank."""
    problems = [p for p in (size_problem(manifest.size_bytes, limits),) if p]
    problems += version_problems(manifest.ir_version, manifest.opset_import, limits)
    problems += [f"input {s.name!r} has no declared shape, so no job could be checked against it"
                 for s in manifest.inputs if s.shape is None]
    return problems


def _specs_text(specs: list[TensorSpec]) -> str:
    return "[" + ", ".join(f"{s.name} {s.dtype} {s.shape}" for s in specs) + "]"
