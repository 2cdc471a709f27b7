"""Onboard end of the model uplink: chunks to a staging file, sha256 check, atomic install.

Staging, one directory per upload under ``staging_dir`` (the state survives a flightd restart)::

    <upload_id>/begin.json      the UploadBegin as accepted (written last when an upload starts)
    <upload_id>/data.part       the file being assembled, preallocated to ``size_bytes``
    <upload_id>/chunks.sha256   32 bytes per chunk: the sha256 of the stored chunk, all zero = missing
    <upload_id>/outcome.json    the final UploadProgress (installed or rejected); data and sidecar deleted

A chunk is written to ``data.part`` before its hash goes to the sidecar, so the sidecar never claims
a chunk that is not on disk; if a write is lost anyway (power cut without fsync), the final check
finds the chunk whose bytes no longer match the sidecar and asks for it again.

A begin is refused before any chunk when its manifest alone shows that the registry cannot take the model
(:func:`flight.model_intake.declared_problems`: too large, an IR version or opset ONNX Runtime onboard does
not load, an input of unknown rank). When every chunk is in, the whole file must hash to the manifest's
sha256; then :meth:`flight.registry.ModelRegistry.install` checks the bytes before ONNX Runtime opens them
(:mod:`flight.model_intake`: external data, custom-op domains, versions, damaged tensors, and the real
inputs and outputs against the manifest's), has ONNX Runtime build a session from them, and installs;
otherwise the upload is rejected with the reason and its bytes deleted. The registry owns its
layout: the file and its manifest assembled in ``<models>/.uplink-<upload_id>/``, renamed
into ``<models>/<name>/<version>`` in one step, so the registry sees a complete, verified version or
nothing. A newly installed version of a model that already has versions never becomes active by
itself: the registry pins the current active version first (``ACTIVE`` marker), and the operator
activates the new one (``ground model activate``).

:meth:`UplinkReceiver.on_message` is synchronous (pure file I/O, hashing and one ONNX Runtime load
at the end); it returns the (topic, payload) pairs the daemon must publish.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.command_guard import Admitted, CommandGuard
from flight.durable import fsync_file, write_atomic
from flight.keyring import UPLOAD
from flight.model_intake import declared_problems
from flight.registry import ModelError, ModelRegistry
from link.auth import AuthError
from link.codec import WireError, encode, peek_header
from link.digest import sha256_file
from link.envelope import is_sealed
from link.messages import Event, EventKind, Severity
from link.topics import TopicMap, check_id
from link.uplink import (
    MAX_MISSING_RANGES,
    UploadBegin,
    UploadChunk,
    UploadProgress,
    UploadQuery,
    UploadState,
    chunk_span,
    decode_upload,
    to_ranges,
)

log = logging.getLogger("flightd.uplink")

BEGIN_FILE = "begin.json"
DATA_FILE = "data.part"
SIDECAR_FILE = "chunks.sha256"
OUTCOME_FILE = "outcome.json"
_DIGEST = 32
_NO_DIGEST = bytes(_DIGEST)

Outputs = list[tuple[str, bytes]]


class UploadRefused(Exception):
    """An upload (or one message of it) that cannot be accepted; ``str()`` is the reason for the wire."""


@dataclass
class StagedUpload:
    """One upload in progress: its accepted begin and which chunks are stored (by their sha256)."""

    begin: UploadBegin
    directory: Path
    digests: list[bytes]

    def __post_init__(self) -> None:
        self.received = sum(1 for d in self.digests if d != _NO_DIGEST)

    @property
    def complete(self) -> bool:
        return self.received == len(self.digests)

    def missing(self) -> list[int]:
        return [i for i, d in enumerate(self.digests) if d == _NO_DIGEST]

    @property
    def data_path(self) -> Path:
        return self.directory / DATA_FILE

    @property
    def sidecar_path(self) -> Path:
        return self.directory / SIDECAR_FILE

    def span(self, index: int) -> tuple[int, int]:
        return chunk_span(index, self.begin.manifest.size_bytes, self.begin.chunk_bytes)

    def store(self, index: int, data: bytes | memoryview, digest: bytes) -> None:
        """Write chunk ``index`` to the data file, then its digest to the sidecar (in that order)."""
        with self.data_path.open("r+b") as f:
            f.seek(self.span(index)[0])
            f.write(data)
        with self.sidecar_path.open("r+b") as f:
            f.seek(index * _DIGEST)
            f.write(digest)
        if self.digests[index] == _NO_DIGEST:
            self.received += 1
        self.digests[index] = digest

    def forget(self, indices: list[int]) -> None:
        """Mark chunks missing again (their bytes on disk did not match their recorded hash)."""
        with self.sidecar_path.open("r+b") as f:
            for index in indices:
                f.seek(index * _DIGEST)
                f.write(_NO_DIGEST)
                if self.digests[index] != _NO_DIGEST:
                    self.received -= 1
                self.digests[index] = _NO_DIGEST


class UplinkReceiver:
    """Receives model uploads on ``models/upload/<id>`` and installs verified models into ``registry``.

    ``topics``: the satellite's topic map (upload topics are parsed and answered with it).
    ``guard``: flightd's :class:`CommandGuard`. An UploadBegin must be signed by an operator key (an
    ``ORS1`` envelope, docs/security.md) and carry a fresh ``issued_utc``, unless the guard accepts
    uploads unsigned (then a legacy HMAC tag is checked where HMAC keys are configured). Chunks and
    queries need no signature: the signed manifest's sha256 covers every byte, and a signed chunk or
    query is verified like any signed message. The signer's anti-replay window is journaled by the
    guard's ``persist`` without waiting: a begin only opens a staging area, and the model is
    installed only after every chunk arrived, long after that write committed. The largest model
    accepted is the registry's ``max_model_bytes``. ``max_active``: uploads in progress at once.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        staging_dir: Path,
        topics: TopicMap,
        clock: Callable[[], float],
        *,
        guard: CommandGuard | None = None,
        max_active: int = 4,
        progress_every: int = 16,
    ) -> None:
        self.registry = registry
        self.staging_dir = Path(staging_dir)
        self.topics = topics
        self.clock = clock
        self.guard = guard
        self.max_active = max_active
        self.progress_every = max(1, progress_every)
        self.uploads: dict[str, StagedUpload] = {}
        self.outcomes: dict[str, UploadProgress] = {}
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self._load()

    # ------------------------------------------------------------------------------------ state

    def _load(self) -> None:
        """Pick up uploads and outcomes left on disk; delete what a crash left half-made."""
        for directory in sorted(p for p in self.staging_dir.iterdir() if p.is_dir()):
            try:
                if (directory / OUTCOME_FILE).is_file():
                    outcome = UploadProgress.model_validate_json((directory / OUTCOME_FILE).read_text())
                    self.outcomes[outcome.upload_id] = outcome
                    for name in (DATA_FILE, SIDECAR_FILE):
                        (directory / name).unlink(missing_ok=True)
                    continue
                begin = UploadBegin.model_validate_json((directory / BEGIN_FILE).read_text())
                sidecar = (directory / SIDECAR_FILE).read_bytes()
                size = (directory / DATA_FILE).stat().st_size
                if len(sidecar) != begin.n_chunks * _DIGEST or size != begin.manifest.size_bytes:
                    raise ValueError("staging files do not match the begin")
            except (OSError, ValueError) as exc:
                log.warning("uplink: discarding unusable staging directory %s (%s)", directory, exc)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            digests = [sidecar[i * _DIGEST : (i + 1) * _DIGEST] for i in range(begin.n_chunks)]
            upload = StagedUpload(begin, directory, digests)
            self.uploads[begin.upload_id] = upload
            log.info("uplink: resuming %s (%s/%s): %d of %d chunks on disk", begin.upload_id,
                     begin.manifest.name, begin.manifest.version, upload.received, begin.n_chunks)

    def progress(self, upload_id: str, query_id: str | None = None, reason: str | None = None) -> UploadProgress:
        """The current state of ``upload_id`` as the ground sees it."""
        now = self.clock()
        upload = self.uploads.get(upload_id)
        if upload is not None:
            begin = upload.begin
            return UploadProgress(
                upload_id=upload_id,
                state=UploadState.RECEIVING,
                at_utc=now,
                received=upload.received,
                n_chunks=begin.n_chunks,
                missing=to_ranges(upload.missing())[:MAX_MISSING_RANGES],
                name=begin.manifest.name,
                version=begin.manifest.version,
                reason=reason,
                query_id=query_id,
            )
        outcome = self.outcomes.get(upload_id)
        if outcome is not None:
            return outcome.model_copy(update={"query_id": query_id, "at_utc": now})
        return UploadProgress(
            upload_id=upload_id,
            state=UploadState.UNKNOWN,
            at_utc=now,
            reason=reason or "no such upload onboard: send UploadBegin",
            query_id=query_id,
        )

    # ---------------------------------------------------------------------------------- routing

    def on_message(self, topic: str, payload: bytes) -> Outputs:
        """Handle one message on this satellite's ``models/upload/<upload_id>``; returns what to publish."""
        upload_id = self.topics.upload_id_of(topic)
        if upload_id is None:
            return []
        out: Outputs = []
        try:
            check_id("upload id", upload_id)
        except ValueError as exc:  # no progress topic can name it: the refusal goes to events only
            log.warning("uplink: refused message on %s (%d bytes): %s", topic, len(payload), exc)
            self._event(out, f"model upload: refused message on {topic}: {exc}", "warning", topic=topic)
            return out
        try:
            admitted = self.guard.open(payload, UPLOAD) if self.guard is not None and is_sealed(payload) else None
            body = payload if admitted is None else admitted.body
            decoded = decode_upload(body)
            message = decoded.message
            if message.upload_id != upload_id:
                raise UploadRefused(f"message names upload {message.upload_id!r} but came on {topic}")
            if isinstance(message, UploadBegin):
                self._on_begin(message, out, peek_header(body), admitted)
            elif isinstance(message, UploadChunk):
                self._on_chunk(message, decoded.binary, out)
            else:
                self._on_query(message, out)
        except (WireError, UploadRefused, AuthError) as exc:
            log.warning("uplink %s: refused message (%d bytes): %s", upload_id, len(payload), exc)
            self._event(out, f"model upload {upload_id}: refused message: {exc}", "warning",
                        upload_id=upload_id)
            out.append(self._reply(self.progress(upload_id, reason=f"refused message: {exc}")))
        return out

    def _reply(self, progress: UploadProgress) -> tuple[str, bytes]:
        return self.topics.upload_progress(progress.upload_id), encode(progress)

    def _event(self, out: Outputs, message: str, severity: Severity, **details: Any) -> None:
        event = Event(kind=EventKind.MODEL, severity=severity, message=message, at_utc=self.clock(), details=details)
        out.append((self.topics.events, encode(event)))

    # ----------------------------------------------------------------------------------- begin

    def _on_begin(
        self, begin: UploadBegin, out: Outputs, received: dict[str, object] | None = None,
        admitted: Admitted | None = None,
    ) -> None:
        if self.guard is not None:
            self.guard.check(begin, issued_utc=begin.issued_utc, received=received, what="model upload",
                             kind=UPLOAD, admitted=admitted)
        uid = begin.upload_id
        existing = self.uploads.get(uid)
        if existing is not None:
            if not existing.begin.same_upload(begin):
                raise UploadRefused(f"upload id {uid} is already receiving a different file or chunking")
            out.append(self._reply(self.progress(uid)))  # a resume: say what is missing
            return
        outcome = self.outcomes.get(uid)
        if outcome is not None and outcome.state is UploadState.INSTALLED:
            out.append(self._reply(self.progress(uid)))
            return
        m = begin.manifest
        ref = f"{m.name}/{m.version}"
        try:
            self._admit(begin)
        except UploadRefused as exc:
            reason = str(exc)
            log.warning("uplink %s (%s): refused: %s", uid, ref, reason)
            self._event(out, f"model upload {uid} ({ref}) refused: {reason}", "error",
                        upload_id=uid, name=m.name, version=m.version, reason=reason)
            refused = UploadProgress(upload_id=uid, state=UploadState.REJECTED, at_utc=self.clock(),
                                     n_chunks=begin.n_chunks, name=m.name, version=m.version, reason=reason)
            out.append(self._reply(refused))
            return
        self.outcomes.pop(uid, None)
        directory = self.staging_dir / uid
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        with (directory / DATA_FILE).open("wb") as f:
            f.truncate(m.size_bytes)
        (directory / SIDECAR_FILE).write_bytes(_NO_DIGEST * begin.n_chunks)
        write_atomic(directory / BEGIN_FILE, begin.model_dump_json())
        self.uploads[uid] = StagedUpload(begin, directory, [_NO_DIGEST] * begin.n_chunks)
        log.info("uplink %s: receiving %s, %d bytes in %d chunks of %d", uid, ref, m.size_bytes,
                 begin.n_chunks, begin.chunk_bytes)
        self._event(out, f"model upload {uid} ({ref}) started: {m.size_bytes} bytes in {begin.n_chunks} chunks",
                    "info", upload_id=uid, name=m.name, version=m.version, size_bytes=m.size_bytes)
        out.append(self._reply(self.progress(uid)))

    def _admit(self, begin: UploadBegin) -> None:
        """UploadRefused unless a new upload of ``begin`` may start."""
        m = begin.manifest
        problems = declared_problems(m, self.registry.limits)
        if problems:
            raise UploadRefused("; ".join(problems))
        if self.registry.has_version(m.name, m.version):
            raise UploadRefused(f"model {m.name}/{m.version} already exists onboard (upload a new version)")
        for other in self.uploads.values():
            if (other.begin.manifest.name, other.begin.manifest.version) == (m.name, m.version):
                raise UploadRefused(f"model {m.name}/{m.version} is already being uploaded as {other.begin.upload_id}")
        if len(self.uploads) >= self.max_active:
            raise UploadRefused(f"{len(self.uploads)} uploads already in progress (limit {self.max_active})")
        for where, free in ((self.staging_dir, shutil.disk_usage(self.staging_dir).free),
                            (self.registry.root, self.registry.free_bytes())):
            if free < m.size_bytes + 16 * 1024 * 1024:
                raise UploadRefused(f"not enough free space in {where}: {free} bytes for a {m.size_bytes}-byte model")

    # ----------------------------------------------------------------------------------- chunks

    def _on_chunk(self, chunk: UploadChunk, data: bytes | memoryview, out: Outputs) -> None:
        upload = self.uploads.get(chunk.upload_id)
        if upload is None:
            out.append(self._reply(self.progress(chunk.upload_id)))  # finished, or never begun
            return
        begin = upload.begin
        if chunk.index >= begin.n_chunks:
            raise UploadRefused(f"chunk index {chunk.index} out of range (upload has {begin.n_chunks} chunks)")
        start, stop = upload.span(chunk.index)
        digest = hashlib.sha256(data).digest()
        if len(data) != stop - start or digest.hex() != chunk.sha256:
            what = (f"{len(data)} bytes, expected {stop - start}" if len(data) != stop - start
                    else f"sha256 {digest.hex()[:16]}... does not match its header {chunk.sha256[:16]}...")
            reason = f"chunk {chunk.index} refused ({what}); send it again"
            log.warning("uplink %s: %s", chunk.upload_id, reason)
            out.append(self._reply(self.progress(chunk.upload_id, reason=reason)))
            return
        if upload.digests[chunk.index] == digest:
            return  # a duplicate (QoS 1 redelivery or a resend that crossed a progress report)
        upload.store(chunk.index, data, digest)
        if upload.complete:
            self._finish(upload, out)
        elif upload.received % self.progress_every == 0:
            out.append(self._reply(self.progress(chunk.upload_id)))

    def _on_query(self, query: UploadQuery, out: Outputs) -> None:
        upload = self.uploads.get(query.upload_id)
        if upload is not None and upload.complete:  # a crash came between the last chunk and the install
            self._finish(upload, out)
        out.append(self._reply(self.progress(query.upload_id, query.query_id)))

    # ---------------------------------------------------------------------------- verify, install

    def _finish(self, upload: StagedUpload, out: Outputs) -> None:
        begin = upload.begin
        m = begin.manifest
        uid = begin.upload_id
        out.append(self._reply(self.progress(uid).model_copy(update={"state": UploadState.VERIFYING})))
        fsync_file(upload.data_path)
        digest = sha256_file(upload.data_path)
        if digest != m.sha256:
            changed = self._chunks_changed_on_disk(upload)
            if changed:
                upload.forget(changed)
                reason = f"chunk(s) {to_ranges(changed)} changed on disk after they were stored; send them again"
                log.error("uplink %s: %s", uid, reason)
                out.append(self._reply(self.progress(uid, reason=reason)))
                return
            self._reject(upload, f"sha256 mismatch: received file hashes to {digest}, manifest says {m.sha256}",
                         out)
            return
        try:
            self.registry.install(upload.data_path, m, uid)
        except ModelError as exc:  # refused by the registry's checks (the reason says how to fix the model)
            self._reject(upload, str(exc), out)
            return
        except OSError as exc:
            self._reject(upload, f"install failed: {exc}", out)
            return
        active = self.registry.active_version(m.name)
        outcome = UploadProgress(upload_id=uid, state=UploadState.INSTALLED, at_utc=self.clock(),
                                 received=begin.n_chunks, n_chunks=begin.n_chunks, name=m.name, version=m.version,
                                 reason=None if active == m.version else f"installed; active version is {active}")
        self._conclude(upload, outcome)
        log.info("uplink %s: installed %s/%s (sha256 %s); active %s", uid, m.name, m.version, m.sha256, active)
        self._event(out, f"model {m.name}/{m.version} installed from upload {uid} (sha256 verified)",
                    "info", upload_id=uid, name=m.name, version=m.version, sha256=m.sha256, active=active)
        out.append(self._reply(outcome))

    def _chunks_changed_on_disk(self, upload: StagedUpload) -> list[int]:
        changed = []
        with upload.data_path.open("rb") as f:
            for index, recorded in enumerate(upload.digests):
                start, stop = upload.span(index)
                f.seek(start)
                if hashlib.sha256(f.read(stop - start)).digest() != recorded:
                    changed.append(index)
        return changed

    def _reject(self, upload: StagedUpload, reason: str, out: Outputs) -> None:
        begin = upload.begin
        m = begin.manifest
        outcome = UploadProgress(upload_id=begin.upload_id, state=UploadState.REJECTED, at_utc=self.clock(),
                                 received=upload.received, n_chunks=begin.n_chunks, name=m.name, version=m.version,
                                 reason=reason)
        self._conclude(upload, outcome)
        log.error("uplink %s: %s/%s rejected: %s", begin.upload_id, m.name, m.version, reason)
        self._event(out, f"model upload {begin.upload_id} ({m.name}/{m.version}) rejected: {reason}",
                    "error", upload_id=begin.upload_id, name=m.name, version=m.version, reason=reason)
        out.append(self._reply(outcome))

    def _conclude(self, upload: StagedUpload, outcome: UploadProgress) -> None:
        """Record the outcome durably, then drop the staged bytes."""
        write_atomic(upload.directory / OUTCOME_FILE, outcome.model_dump_json())
        for name in (DATA_FILE, SIDECAR_FILE):
            (upload.directory / name).unlink(missing_ok=True)
        self.uploads.pop(upload.begin.upload_id, None)
        self.outcomes[outcome.upload_id] = outcome

