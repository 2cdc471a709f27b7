"""The onboard model registry: ``<models>/<name>/<version>/{model.onnx, manifest.json}``.

The registry owns this layout; nothing else writes into ``<models>``:

- a model is loaded only when the sha256 of the bytes handed to ONNX Runtime equals the manifest's:
  the file is read once, hashed, and the session is built from those same bytes;
- before ONNX Runtime ever opens a file, its bytes pass :mod:`flight.model_intake` (no external data, IR
  version and opsets this ONNX Runtime loads, no custom-op domain, tensors that fit their shapes, an
  interface jobs can be checked against) and must be what the manifest says (inputs and outputs by name,
  dtype and shape); :meth:`ModelRegistry.scan` marks a version that fails as not loadable, and
  :meth:`ModelRegistry.install` refuses it;
- the active version of each model is named in ``<models>/<name>/ACTIVE`` (replaced atomically);
  ``PREVIOUS`` keeps the one before, for :meth:`ModelRegistry.rollback`. Without ``ACTIVE`` the
  highest version is active;
- :meth:`ModelRegistry.install` adds a version from a file and its manifest once :meth:`ModelRegistry.check_model`
  passed it (the checks above, then ONNX Runtime builds a session from its bytes): both are
  written and fsynced in ``<models>/.uplink-<tag>/`` (too shallow for the ``*/*/manifest.json`` scan),
  the model's current active version is pinned in ``ACTIVE`` (a new version never becomes active by
  itself), then the directory is renamed to ``<models>/<name>/<version>`` in one step. So a scan sees
  a complete version or nothing; :meth:`ModelRegistry.scan` deletes the ``.uplink-*`` leftovers of an
  install cut short by a crash or a power loss.

Execution providers come from configuration in order of preference (TensorRT -> CUDA -> CPU); those
not available in this build of ONNX Runtime are skipped and CPU is always the last resort.

Soft errors (docs/radiation.md): the weights of a model configured ``owned_weights`` are held in
flightd's memory and scrubbed (:class:`flight.radiation.held.HeldWeights`, built over this registry's
:meth:`ModelRegistry.verified_bytes`, which checks the file's sha256 again before every load and every
reload); a session is cached per (model, version, intra-op threads, replica slot), the slot being the
weight replica (or, for a model not held, the independent session) a redundant run executes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from pydantic import ValidationError

from flight.durable import fsync_dir, fsync_file, write_atomic
from flight.model_intake import MAX_MODEL_BYTES, load_problem, manifest_problems, model_problems, runtime_limits
from flight.radiation.held import HeldWeights
from flight.settings import RadiationSettings
from link.codec import describe_validation_error
from link.digest import sha256_file
from link.manifest import MANIFEST_FILE, MODEL_FILE, ModelManifest
from link.messages import ModelLimits

log = logging.getLogger("flightd.registry")

ACTIVE_FILE = "ACTIVE"
PREVIOUS_FILE = "PREVIOUS"
INSTALL_PREFIX = ".uplink-"
"""Prefix of the directory an install is assembled in, directly under ``<models>``."""


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
    """Manifests on disk, active versions, and a cache of verified ONNX Runtime sessions.

    ``max_model_bytes``: the largest model an upload may bring (part of :attr:`limits`).
    """

    root: Path
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    radiation: RadiationSettings = field(default_factory=RadiationSettings)
    max_model_bytes: int = MAX_MODEL_BYTES
    models: dict[str, dict[str, RegisteredModel]] = field(default_factory=dict)
    _sessions: dict[tuple[str, str, int, int], ort.InferenceSession] = field(default_factory=dict)
    held: HeldWeights = field(init=False)
    _lock: threading.RLock = field(init=False, default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.held = HeldWeights(self.radiation, self.verified_bytes, time.monotonic)

    @property
    def limits(self) -> ModelLimits:
        """What this registry takes: the ONNX Runtime installed here (probed once) and ``max_model_bytes``."""
        return runtime_limits(self.max_model_bytes)

    # ---------------------------------------------------------------------------------- discovery

    def scan(self) -> list[str]:
        """Re-read every manifest and check every file's hash; returns one line per problem found."""
        self.models = {}
        with self._lock:
            self._sessions.clear()
            self.held.drop()
        problems: list[str] = []
        if not self.root.is_dir():
            return [f"models directory {self.root} does not exist"]
        for leftover in sorted(self.root.glob(INSTALL_PREFIX + "*")):
            log.warning("model registry: deleting %s, left by an interrupted install", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
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
            return entry
        try:
            data = model_path.read_bytes()
        except OSError as exc:
            entry.problem = f"{MODEL_FILE} is unreadable: {exc}"
            return entry
        if (digest := hashlib.sha256(data).hexdigest()) != manifest.sha256:
            entry.problem = f"sha256 mismatch: file {digest[:16]}..., manifest {manifest.sha256[:16]}..."
        elif problems := self.file_problems(data, manifest):
            entry.problem = "; ".join(problems)
        return entry

    def file_problems(self, data: bytes, manifest: ModelManifest) -> list[str]:
        """Why the model file ``data`` cannot be loaded or checked here, or is not what ``manifest`` says
        (:mod:`flight.model_intake`; ONNX Runtime does not see the bytes)."""
        outline, problems = model_problems(data, self.limits)
        if outline is not None:
            problems += manifest_problems(manifest, outline, len(data))
        return problems

    def check_model(self, data: bytes, manifest: ModelManifest) -> None:
        """ModelError with every reason unless ``data`` passes :meth:`file_problems` and ONNX Runtime then
        builds a session from it (CPU, one thread)."""
        ref = f"{manifest.name}/{manifest.version}"
        problems = self.file_problems(data, manifest)
        if problems:
            raise ModelError(f"model {ref} refused: {'; '.join(problems)}")
        problem = load_problem(data)
        if problem:
            raise ModelError(f"model {ref} refused: {problem}")

    # ---------------------------------------------------------------------------------- versions

    def active_version(self, name: str) -> str | None:
        versions = self.models.get(name)
        if not versions:
            return None
        marker = self.root / name / ACTIVE_FILE
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

    def has_version(self, name: str, version: str) -> bool:
        """Whether ``name/version`` is registered or its directory exists (even unreadable)."""
        return version in self.models.get(name, {}) or (self.root / name / version).exists()

    def free_bytes(self) -> int:
        """Free space on the registry's file system (bytes); creates the models directory if needed."""
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free

    def activate(self, name: str, version: str) -> str | None:
        """Make ``version`` active (atomically); returns the version it replaced."""
        entry = self.resolve(name, version)
        previous = self.active_version(name)
        if previous is not None and previous != version:
            write_atomic(self.root / name / PREVIOUS_FILE, previous + "\n")
        write_atomic(self.root / name / ACTIVE_FILE, entry.manifest.version + "\n")
        log.info("model %s: active version %s (was %s)", name, version, previous)
        return previous

    def rollback(self, name: str) -> str:
        """Re-activate the version active before the last activation; returns it."""
        marker = self.root / name / PREVIOUS_FILE
        if not marker.is_file():
            raise ModelError(f"model {name!r} has no previous version to roll back to")
        previous = marker.read_text().strip()
        self.activate(name, previous)
        return previous

    def pin_active(self, name: str) -> None:
        """Write ``ACTIVE`` for the version of ``name`` active now, if no marker names one yet, so that a
        higher version installed next does not become active by itself. Nothing to pin (no version, or
        none loadable) is not an error."""
        current = self.active_version(name)
        if current is not None and not (self.root / name / ACTIVE_FILE).is_file():
            with contextlib.suppress(ModelError):
                self.activate(name, current)

    def install(self, source: Path, manifest: ModelManifest, tag: str) -> RegisteredModel:
        """Add the model file ``source`` as ``name/version`` of ``manifest``.

        The bytes must hash to ``manifest.sha256`` and pass :meth:`check_model`. Assembled in
        ``<models>/.uplink-<tag>/`` (``tag``: an identifier of this install, the upload id), written bytes
        fsynced and hashed again, the current active version pinned, then renamed into place in one step
        and the registry rescanned (see the module docstring). Returns the new entry. Raises ModelError
        (the version exists, the file is not the manifest's or is refused, or the rescan does not trust
        the copy: it is then deleted again) or OSError (disk full, I/O error).
        """
        m = manifest
        target = self.root / m.name / m.version
        if target.exists():
            raise ModelError(f"{target} already exists")
        data = Path(source).read_bytes()
        if (digest := hashlib.sha256(data).hexdigest()) != m.sha256:
            raise ModelError(
                f"the file to install does not hash to the manifest's sha256 ({digest}, manifest {m.sha256})")
        self.check_model(data, m)
        tmp = self.root / f"{INSTALL_PREFIX}{tag}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            (tmp / MODEL_FILE).write_bytes(data)
            fsync_file(tmp / MODEL_FILE)
            write_atomic(tmp / MANIFEST_FILE, m.model_dump_json(indent=2) + "\n")
            if sha256_file(tmp / MODEL_FILE) != m.sha256:
                raise ModelError("the copy in the registry does not hash to the manifest's sha256")
            fsync_dir(tmp)
            self.pin_active(m.name)
            (self.root / m.name).mkdir(exist_ok=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(self.root / m.name)
        self.scan()
        entry = self.models.get(m.name, {}).get(m.version)
        if entry is None or entry.problem:  # only if the disk changed under us: take it out again
            shutil.rmtree(target, ignore_errors=True)
            self.scan()
            problem = entry.problem if entry else "absent after the rename"
            raise ModelError(f"registry does not trust the installed copy: {problem}")
        log.info("model %s installed (sha256 %s)", entry.ref, m.sha256)
        return entry

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

    def verified_bytes(self, ref: str) -> bytes:
        """The bytes of ``ref``'s (``name/version``) model file, read now and trusted only if their sha256
        is the manifest's; ModelError (and the entry marked not loadable) otherwise. Every load and every
        reload of weights from the file goes through here."""
        name, _, version = ref.partition("/")
        entry = self.models.get(name, {}).get(version)
        if entry is None:
            raise ModelError(f"model {ref} is not registered")
        return self._verified(entry)

    @staticmethod
    def _verified(entry: RegisteredModel) -> bytes:
        try:
            data = (entry.directory / MODEL_FILE).read_bytes()
        except OSError as exc:
            entry.problem = f"{MODEL_FILE} unreadable: {exc}"
            raise ModelError(f"model {entry.ref} is not loadable: {entry.problem}") from exc
        if hashlib.sha256(data).hexdigest() != entry.manifest.sha256:
            entry.problem = "sha256 mismatch at load time (file changed on disk)"
            raise ModelError(f"model {entry.ref} is not loadable: {entry.problem}")
        return data

    def session(self, entry: RegisteredModel, intra_op_threads: int, slot: int = 0) -> ort.InferenceSession:
        """A session of ``entry`` with ``intra_op_threads`` (cached), built from hash-verified bytes; ``slot``
        is the weight replica (or independent session) it computes from (:meth:`HeldWeights.slot_for`).
        Safe to call from the executor's threads."""
        key = (entry.manifest.name, entry.manifest.version, intra_op_threads, slot)
        with self._lock:
            cached = self._sessions.get(key)
            if cached is not None:
                return cached
            return self._load(entry, intra_op_threads, slot, key)

    def _load(self, entry: RegisteredModel, intra_op_threads: int, slot: int,
              key: tuple[str, str, int, int]) -> ort.InferenceSession:
        data = self._verified(entry)
        try:
            store = self.held.store(entry.ref, entry.manifest.name, data)
        except ValueError as exc:  # weights a store cannot hold (external data, sparse initializers)
            raise ModelError(f"model {entry.ref}: its weights cannot be held for scrubbing: {exc}") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        last_error: Exception | None = None
        for i, provider in enumerate(self.available_providers()):
            try:
                session = self.held.session(store, data, options, provider, slot)
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
        with self._lock:
            return sorted({s.get_providers()[0] for s in self._sessions.values()})

    def unload(self, ref: str, reason: str) -> None:
        """Drop ``ref``'s sessions and held weights and mark it not loadable (weights that could not be
        repaired); a rescan (an install, a restart) looks at the file again."""
        name, _, version = ref.partition("/")
        with self._lock:
            for key in [k for k in self._sessions if (k[0], k[1]) == (name, version)]:
                del self._sessions[key]
            self.held.drop(ref)
        entry = self.models.get(name, {}).get(version)
        if entry is not None:
            entry.problem = reason
        log.error("model %s unloaded: %s", ref, reason)


def check_inputs(manifest: ModelManifest, arrays: dict[str, np.ndarray[Any, Any]]) -> None:
    """ModelError unless ``arrays`` are exactly the model's declared inputs with fitting dtype and shape.

    A symbolic dimension (a name such as ``"N"``) binds to one size for the whole job: two inputs (or two
    axes of one) that share it must agree, as ONNX Runtime would otherwise fail the run (a broadcast
    error) long after intake. Unnamed dynamic dimensions (None) are free.
    """
    declared = {spec.name: spec for spec in manifest.inputs}
    missing = sorted(set(declared) - set(arrays))
    extra = sorted(set(arrays) - set(declared))
    ref = f"model {manifest.name}/{manifest.version}"
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing input(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected input(s) {', '.join(extra)}")
        raise ModelError(f"{ref}: {'; '.join(parts)} (declared: {', '.join(declared)})")
    bound: dict[str, tuple[int, str, int]] = {}  # symbol -> (size, input, axis) where it was first bound
    for name, spec in declared.items():
        array = arrays[name]
        reason = spec.accepts(np.dtype(array.dtype).name, list(array.shape))
        if reason:
            raise ModelError(f"{ref}: {reason}")
        for axis, (dim, size) in enumerate(zip(spec.shape or [], array.shape, strict=False)):
            if not isinstance(dim, str):
                continue
            first = bound.setdefault(dim, (int(size), name, axis))
            if first[0] != size:
                raise ModelError(
                    f"{ref}: dimension {dim!r} is {first[0]} in input {first[1]!r} axis {first[2]} but {size} in "
                    f"input {name!r} axis {axis}; inputs that share a symbolic dimension must agree"
                )
