"""The onboard model registry: ``<models>/<name>/<version>/{model.onnx, manifest.json}``.

A model is loaded only when the sha256 of the bytes handed to ONNX Runtime equals the manifest's:
the file is read once, hashed, and the session is built from those same bytes. The active version of
each model is named in ``<models>/<name>/ACTIVE`` (replaced atomically); ``PREVIOUS`` keeps the one
before, for rollback. Without ``ACTIVE`` the highest version is active.

Execution providers come from configuration in order of preference (TensorRT -> CUDA -> CPU); those
not available in this build of ONNX Runtime are skipped and CPU is always the last resort.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from pydantic import ValidationError

from link.codec import describe_validation_error
from link.digest import sha256_file
from link.manifest import MANIFEST_FILE, MODEL_FILE, ModelManifest

log = logging.getLogger("flightd.registry")


class ModelError(ValueError):
    """A model that is unknown, not loadable, or does not fit a job; ``str()`` is the reason for the wire."""


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key: numeric parts compare as numbers ("1.10.0" > "1.9.0")."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-_]", version))


@dataclass
class RegisteredModel:
    """A manifest that was found on disk, and whether its bytes can be trusted."""

    manifest: ModelManifest
    directory: Path
    problem: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.manifest.name}/{self.manifest.version}"


@dataclass
class ModelRegistry:
    """Manifests on disk, active versions, and a cache of verified ONNX Runtime sessions."""

    root: Path
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    models: dict[str, dict[str, RegisteredModel]] = field(default_factory=dict)
    _sessions: dict[tuple[str, str, int], ort.InferenceSession] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # ---------------------------------------------------------------------------------- discovery

    def scan(self) -> list[str]:
        """Re-read every manifest and check every file's hash; returns one line per problem found."""
        self.models = {}
        self._sessions.clear()
        problems: list[str] = []
        if not self.root.is_dir():
            return [f"models directory {self.root} does not exist"]
        for manifest_path in sorted(self.root.glob(f"*/*/{MANIFEST_FILE}")):
            entry = self._inspect(manifest_path)
            if entry is None:
                problems.append(f"{manifest_path}: unreadable manifest")
                continue
            self.models.setdefault(entry.manifest.name, {})[entry.manifest.version] = entry
            if entry.problem:
                problems.append(f"{entry.ref}: {entry.problem}")
        for line in problems:
            log.error("model registry: %s", line)
        return problems

    def _inspect(self, manifest_path: Path) -> RegisteredModel | None:
        try:
            manifest = ModelManifest.model_validate(json.loads(manifest_path.read_text()))
        except (OSError, ValueError) as exc:
            reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            log.error("model registry: %s: %s", manifest_path, reason)
            return None
        directory = manifest_path.parent
        entry = RegisteredModel(manifest, directory)
        if (directory.parent.name, directory.name) != (manifest.name, manifest.version):
            entry.problem = f"manifest says {manifest.name}/{manifest.version} but lives in {directory}"
            return entry
        model_path = directory / MODEL_FILE
        if not model_path.is_file():
            entry.problem = f"{MODEL_FILE} is missing"
        elif (digest := sha256_file(model_path)) != manifest.sha256:
            entry.problem = f"sha256 mismatch: file {digest[:16]}..., manifest {manifest.sha256[:16]}..."
        return entry

    # ---------------------------------------------------------------------------------- versions

    def active_version(self, name: str) -> str | None:
        versions = self.models.get(name)
        if not versions:
            return None
        marker = self.root / name / "ACTIVE"
        if marker.is_file():
            wanted = marker.read_text().strip()
            if wanted in versions:
                return wanted
        good = [v for v, e in versions.items() if e.problem is None]
        return max(good or versions, key=version_key)

    def resolve(self, name: str, version: str | None = None) -> RegisteredModel:
        """The model a job asks for (its active version unless one is named), trusted, or ModelError."""
        versions = self.models.get(name)
        if not versions:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelError(f"unknown model {name!r} (onboard: {known})")
        chosen = version or self.active_version(name)
        entry = versions.get(chosen or "")
        if entry is None:
            raise ModelError(f"model {name!r} has no version {version!r} (onboard: {', '.join(sorted(versions))})")
        if entry.problem:
            raise ModelError(f"model {entry.ref} is not loadable: {entry.problem}")
        return entry

    def _write_marker(self, name: str, marker: str, version: str) -> None:
        path = self.root / name / marker
        tmp = path.with_suffix(".tmp")
        tmp.write_text(version + "\n")
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def activate(self, name: str, version: str) -> str | None:
        """Make ``version`` active (atomically); returns the version it replaced."""
        entry = self.resolve(name, version)
        previous = self.active_version(name)
        if previous is not None and previous != version:
            self._write_marker(name, "PREVIOUS", previous)
        self._write_marker(name, "ACTIVE", entry.manifest.version)
        log.info("model %s: active version %s (was %s)", name, version, previous)
        return previous

    def rollback(self, name: str) -> str:
        """Re-activate the version active before the last activation; returns it."""
        marker = self.root / name / "PREVIOUS"
        if not marker.is_file():
            raise ModelError(f"model {name!r} has no previous version to roll back to")
        previous = marker.read_text().strip()
        self.activate(name, previous)
        return previous

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.models):
            active = self.active_version(name)
            for version in sorted(self.models[name], key=version_key):
                e = self.models[name][version]
                out.append(
                    {
                        "name": name,
                        "version": version,
                        "active": version == active,
                        "sha256": e.manifest.sha256,
                        "size_bytes": e.manifest.size_bytes,
                        "quantization": e.manifest.quantization,
                        "inputs": [spec.model_dump() for spec in e.manifest.inputs],
                        "outputs": [spec.model_dump() for spec in e.manifest.outputs],
                        "problem": e.problem,
                    }
                )
        return out

    # ---------------------------------------------------------------------------------- sessions

    def available_providers(self) -> list[str]:
        have = set(ort.get_available_providers())
        chosen = [p for p in self.providers if p in have]
        if "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")
        return chosen

    def session(self, entry: RegisteredModel, intra_op_threads: int) -> ort.InferenceSession:
        """A session of ``entry`` with ``intra_op_threads`` (cached), built from hash-verified bytes."""
        key = (entry.manifest.name, entry.manifest.version, intra_op_threads)
        cached = self._sessions.get(key)
        if cached is not None:
            return cached
        data = (entry.directory / MODEL_FILE).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry.manifest.sha256:
            entry.problem = "sha256 mismatch at load time (file changed on disk)"
            raise ModelError(f"model {entry.ref} is not loadable: {entry.problem}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        last_error: Exception | None = None
        for i, provider in enumerate(self.available_providers()):
            try:
                session = ort.InferenceSession(data, sess_options=options, providers=[provider])
            except Exception as exc:  # a provider that fails to initialise: try the next one
                log.warning("model %s: provider %s failed (%s), falling back", entry.ref, provider, exc)
                last_error = exc
                continue
            if i > 0:
                log.warning("model %s: running on %s", entry.ref, provider)
            self._sessions[key] = session
            return session
        raise ModelError(f"model {entry.ref} could not be loaded: {last_error}")

    def providers_in_use(self) -> list[str]:
        return sorted({s.get_providers()[0] for s in self._sessions.values()})


def check_inputs(manifest: ModelManifest, arrays: dict[str, np.ndarray[Any, Any]]) -> None:
    """ModelError unless ``arrays`` are exactly the model's declared inputs with fitting dtype and shape."""
    declared = {spec.name: spec for spec in manifest.inputs}
    missing = sorted(set(declared) - set(arrays))
    extra = sorted(set(arrays) - set(declared))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing input(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected input(s) {', '.join(extra)}")
        raise ModelError(
            f"model {manifest.name}/{manifest.version}: {'; '.join(parts)} (declared: {', '.join(declared)})"
        )
    for name, array in arrays.items():
        reason = declared[name].accepts(np.dtype(array.dtype).name, list(array.shape))
        if reason:
            raise ModelError(f"model {manifest.name}/{manifest.version}: {reason}")
