"""Model files on disk: sha256, interface specs read from an ONNX graph, manifests and SHA256SUMS.

A registry version is ``<root>/<name>/<version>/model.onnx`` + ``manifest.json``
(:class:`link.manifest.ModelManifest`). ``<root>/SHA256SUMS`` lists every ``.onnx`` below ``root`` in
``sha256sum`` format (``<hex>  <relative path>``), sorted by path, so ``sha256sum -c SHA256SUMS`` works.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from link.digest import sha256_file
from link.manifest import MANIFEST_FILE, MODEL_FILE, ManifestDim, ModelManifest, TensorSpec
from link.tensor import SUPPORTED_DTYPES, DType

SHA256SUMS_FILE = "SHA256SUMS"


class ModelFileError(ValueError):
    """A model file cannot be described by a manifest (unsupported dtype, unknown rank, bad path)."""


def _value_info_spec(info: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = info.type.tensor_type
    if not info.type.HasField("tensor_type"):
        raise ModelFileError(f"{info.name!r} is not a tensor; only tensor inputs/outputs are supported")
    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    dtype = np_dtype.name
    if dtype not in SUPPORTED_DTYPES:
        raise ModelFileError(f"{info.name!r} has dtype {dtype}, not one of {', '.join(SUPPORTED_DTYPES)}")
    if not tensor_type.HasField("shape"):
        raise ModelFileError(f"{info.name!r} has no declared shape (unknown rank)")
    shape: list[ManifestDim] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            shape.append(dim.dim_param)
        else:
            shape.append(None)
    dtype_lit: DType = dtype  # type: ignore[assignment]  # checked against SUPPORTED_DTYPES above
    return TensorSpec(name=info.name, dtype=dtype_lit, shape=shape)


def interface_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of a graph as :class:`TensorSpec`; initializers listed as inputs are skipped."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [_value_info_spec(v) for v in model.graph.input if v.name not in initializers]
    outputs = [_value_info_spec(v) for v in model.graph.output]
    return inputs, outputs


def build_manifest(
    model_path: Path,
    *,
    name: str,
    version: str,
    quantization: str = "fp32",
    description: str = "",
    provenance: dict[str, str] | None = None,
) -> ModelManifest:
    """Manifest of the ONNX file at ``model_path``: sha256, size (bytes) and interface from the graph."""
    model = onnx.load(str(model_path), load_external_data=False)
    inputs, outputs = interface_specs(model)
    return ModelManifest.model_validate(
        {
            "name": name,
            "version": version,
            "sha256": sha256_file(model_path),
            "size_bytes": model_path.stat().st_size,
            "inputs": [s.model_dump() for s in inputs],
            "outputs": [s.model_dump() for s in outputs],
            "quantization": quantization,
            "description": description,
            "provenance": dict(provenance or {}),
        }
    )


def write_manifest(manifest: ModelManifest, directory: Path) -> Path:
    """Write ``manifest.json`` (indented, trailing newline) into ``directory``; returns its path."""
    path = directory / MANIFEST_FILE
    path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(directory: Path) -> ModelManifest:
    """Load and validate ``directory/manifest.json``."""
    return ModelManifest.model_validate_json((directory / MANIFEST_FILE).read_text(encoding="utf-8"))


def verify_model_dir(directory: Path) -> str | None:
    """None if ``model.onnx`` in ``directory`` matches its manifest (sha256, size), else the reason."""
    manifest = read_manifest(directory)
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        return f"{model_path} is missing"
    size = model_path.stat().st_size
    if size != manifest.size_bytes:
        return f"{model_path}: {size} bytes, manifest says {manifest.size_bytes}"
    digest = sha256_file(model_path)
    if digest != manifest.sha256:
        return f"{model_path}: sha256 {digest}, manifest says {manifest.sha256}"
    return None


def sha256sums_text(root: Path) -> str:
    """``sha256sum``-format listing of every ``*.onnx`` under ``root`` (paths relative, POSIX, sorted)."""
    lines = [
        f"{sha256_file(path)}  {path.relative_to(root).as_posix()}"
        for path in sorted(root.rglob("*.onnx"), key=lambda p: p.relative_to(root).as_posix())
    ]
    return "".join(line + "\n" for line in lines)


def write_sha256sums(root: Path) -> Path:
    """(Re)write ``root/SHA256SUMS`` from the ``.onnx`` files found under ``root``."""
    path = root / SHA256SUMS_FILE
    path.write_text(sha256sums_text(root), encoding="utf-8")
    return path


def parse_sha256sums(text: str) -> dict[str, str]:
    """{relative path: sha256} from ``sha256sum``-format text; raises :class:`ModelFileError` on a bad line."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ModelFileError(f"SHA256SUMS line {number} is not '<sha256>  <path>': {line!r}")
        entries[rel.lstrip("*")] = digest
    return entries
