"""Model files on disk: sha256, interface specs read from an ONNX graph, manifests and SHA256SUMS.

A registry version is ``<root>/<name>/<version>/model.onnx`` + ``manifest.json``
(:class:`link.manifest.ModelManifest`). ``<root>/SHA256SUMS`` lists every ``.onnx`` below ``root`` in
``sha256sum`` format (``<hex>  <relative path>``), sorted by path, so ``sha256sum -c SHA256SUMS`` works.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx

from flight.model_intake import EXTERNAL_FIX, interface
from flight.model_proto import ModelOutline, ModelProtoError, read_outline
from link.digest import sha256_file
from link.manifest import MANIFEST_FILE, MODEL_FILE, ModelManifest, TensorSpec

SHA256SUMS_FILE = "SHA256SUMS"


class ModelFileError(ValueError):
    """A model file cannot be described by a manifest (not ONNX, external data, an interface jobs cannot
    carry, a bad path)."""


def _outline(data: bytes) -> ModelOutline:
    try:
        return read_outline(data)
    except ModelProtoError as exc:
        raise ModelFileError(f"not an ONNX model, or cut short: {exc}") from None


def interface_specs(model: onnx.ModelProto | bytes) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of a model as :class:`TensorSpec`, read as the onboard registry reads them
    (:func:`flight.model_intake.interface`; initializers listed as inputs are skipped). Raises
    :class:`ModelFileError` when jobs could not be checked against them (not tensors, an element type
    the link does not carry, an input of unknown rank)."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    inputs, outputs, problems = interface(_outline(data))
    if problems:
        raise ModelFileError("; ".join(problems))
    return inputs, outputs


def build_manifest(
    model: Path | bytes,
    *,
    name: str,
    version: str,
    quantization: str = "fp32",
    description: str = "",
    provenance: dict[str, str] | None = None,
) -> ModelManifest:
    """Manifest of an ONNX model (a file's path, or its bytes): sha256, size (bytes), interface, IR version
    and opsets. Raises :class:`ModelFileError` for a model whose sha256 would not cover it (external data)
    or whose interface jobs could not carry, OSError when the file cannot be read."""
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    outline = _outline(data)
    if outline.external:
        raise ModelFileError(f"{', '.join(outline.external[:3])} keep(s) data in an external file, which the "
                             f"manifest's sha256 would not cover: {EXTERNAL_FIX}")
    inputs, outputs = interface_specs(data)
    return ModelManifest.model_validate(
        {
            "name": name,
            "version": version,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
            "inputs": [s.model_dump() for s in inputs],
            "outputs": [s.model_dump() for s in outputs],
            "quantization": quantization,
            "description": description,
            "provenance": dict(provenance or {}),
            "ir_version": outline.ir_version,
            "opset_import": outline.opset_import,
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
