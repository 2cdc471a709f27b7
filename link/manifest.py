"""The model manifest: what the onboard registry needs to trust and run a model file.

A model lives in ``<models>/<name>/<version>/`` as ``model.onnx`` + ``manifest.json``. flightd loads a
model only when the sha256 of ``model.onnx`` equals ``sha256`` here and the file's real interface
(names, dtypes, shapes), IR version and opsets are the ones declared here (flight/model_intake.py).
What a satellite's registry accepts at all is :class:`link.messages.ModelLimits`, advertised in its status.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from link.messages import Domain, Identifier
from link.numbers import Count, LinkModel
from link.tensor import DType

# A dimension is a fixed size, or a symbolic name / None for a dynamic one (a batch axis, say).
ManifestDim = Count | str | None

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"


class TensorSpec(LinkModel):
    """Declared name, element type and shape of one model input or output.

    ``shape`` None (or absent, as messages leave out None fields): the rank is unknown (allowed for outputs
    only: the registry refuses a model with an input of unknown rank, since no job could be checked against
    it). A symbolic dimension (a string) stands for one size across all of a job's inputs
    (:func:`flight.registry.check_inputs`).
    """

    name: str
    dtype: DType
    shape: list[ManifestDim] | None = None

    def accepts(self, dtype: str, shape: list[int]) -> str | None:
        """None if a tensor of ``dtype`` and ``shape`` fits this spec, else the reason it does not."""
        if dtype != self.dtype:
            return f"input {self.name!r} must be {self.dtype}, got {dtype}"
        if self.shape is None:
            return None
        if len(shape) != len(self.shape):
            return f"input {self.name!r} must have rank {len(self.shape)} {self.shape}, got {shape}"
        for axis, (want, got) in enumerate(zip(self.shape, shape, strict=True)):
            if isinstance(want, int) and want != got:
                return f"input {self.name!r} axis {axis} must be {want} (shape {self.shape}), got {shape}"
        return None


class ModelManifest(LinkModel):
    """Identity, integrity and interface of one model version."""

    schema_version: Literal[1] = 1
    name: Identifier
    version: Identifier
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: Count
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    quantization: Literal["fp32", "fp16", "int8-qdq", "other"] = "fp32"
    description: str = ""
    provenance: dict[str, str] = Field(default_factory=dict)
    ir_version: Count | None = None
    """The file's ONNX IR version (None: not declared, as in manifests written before it was added)."""
    opset_import: dict[Domain, Count] = Field(default_factory=dict)
    """The file's opsets, domain -> version ("" = ai.onnx); empty: not declared."""

