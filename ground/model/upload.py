"""Ground end of the model uplink: ``ground model upload FILE --name N --version V``.

The file goes up in chunks (framed :class:`link.uplink.UploadChunk`, QoS 1, at most ``window``
unacknowledged at once). Then the ground asks the satellite what is missing
(:class:`link.uplink.UploadQuery`) and sends only that, until the satellite answers ``installed`` or
``rejected``. A lost broker connection (broker restart, link drop) ends the current connection;
a fresh one re-sends the (idempotent) begin, asks again and resends only the missing chunks. The
upload id is derived from the name, version, sha256 and chunk size, so running the same command
again after the ground itself died resumes the same upload.

Before anything is published, the file must pass the onboard registry's own checks
(:mod:`flight.model_intake`) against the limits the satellite advertises in its status (its ONNX Runtime's
IR version and opsets, its operator domains, its largest model; without an advertised status, against the
ONNX Runtime installed here), the manifest must describe the file, and ONNX Runtime here must build a session
from its bytes: a model that could never run onboard is refused with the reason and how to fix it, and no
message reaches the broker (:func:`preflight`).

The uploader opens its own MQTT connection(s) from the :class:`GroundClient`'s broker URL, satellite
and command key, so it can reconnect without disturbing the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from flight.model_intake import load_problem, manifest_problems, model_problems, runtime_limits, size_problem
from ground.client import GroundClient, GroundError, new_id
from ground.model.files import ModelFileError, build_manifest
from link.auth import sign
from link.codec import WireError, decode, encode
from link.manifest import ModelManifest
from link.messages import ModelLimits
from link.uplink import (
    DEFAULT_CHUNK_BYTES,
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    UploadBegin,
    UploadChunk,
    UploadProgress,
    UploadQuery,
    UploadState,
    chunk_count,
    chunk_message_bytes,
    chunk_span,
    from_ranges,
)

log = logging.getLogger("ground.uplink")

ProgressFn = Callable[[int, int], None]
"""Called with (chunks known to be delivered, total chunks) whenever that number grows."""


class UploadFailed(GroundError):
    """The upload did not finish (time out, unreadable file); a rejection is a result, not this."""


BEGIN_ATTEMPTS = 5
"""Begins sent in a row that the satellite answers with "no such upload" before the upload fails: it is
refusing the begin itself (a message it cannot read, such as a manifest field an older flightd does not
know), and sending it again would only repeat the refusal as fast as the link allows."""


class _LinkLost(aiomqtt.MqttError):
    """The broker connection ended while the uploader was waiting on it."""


@dataclass
class UploadStats:
    """What an upload cost on the link (filled in while it runs)."""

    chunk_publishes: int = 0
    """Chunk messages handed to the MQTT client (including ones lost with a connection)."""
    chunks_acked: int = 0
    """Chunk publishes the broker acknowledged (PUBACK)."""
    connections: int = 0
    chunk_publishes_by_connection: list[int] = field(default_factory=list)
    received_on_connect: list[int] = field(default_factory=list)
    """Chunks the satellite already held, as it reported at the start of each connection."""


def upload_id_for(manifest: ModelManifest, chunk_bytes: int) -> str:
    """The deterministic upload id of a file and chunking (so a re-run resumes the same upload)."""
    key = f"{manifest.name}/{manifest.version}/{manifest.sha256}/{manifest.size_bytes}/{chunk_bytes}"
    return "up-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class _Uploader:
    def __init__(
        self,
        client: GroundClient,
        path: Path,
        manifest: ModelManifest,
        upload_id: str,
        chunk_bytes: int,
        window: int,
        reply_timeout_s: float,
        progress: ProgressFn | None,
        stats: UploadStats,
    ) -> None:
        self.client = client
        self.path = path
        self.manifest = manifest
        self.upload_id = upload_id
        self.chunk_bytes = chunk_bytes
        self.n_chunks = chunk_count(manifest.size_bytes, chunk_bytes)
        self.window = window
        self.reply_timeout_s = reply_timeout_s
        self.progress = progress
        self.stats = stats
        self.topic = client.topics.upload(upload_id)
        self.progress_topic = client.topics.upload_progress(upload_id)
        self.delivered: set[int] = set()
        self.refusal: str | None = None
        """The latest "refused message" reason the satellite gave for this upload."""

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(len(self.delivered), self.n_chunks)

    def _begin_payload(self) -> bytes:
        begin = UploadBegin(
            upload_id=self.upload_id,
            manifest=self.manifest,
            chunk_bytes=self.chunk_bytes,
            n_chunks=self.n_chunks,
            issued_utc=time.time(),
        )
        if self.client.signer is None and self.client.key is not None and self.client.key_id is not None:
            begin = sign(begin, self.client.key_id, self.client.key)
        return self.client.seal(encode(begin))

    async def run(self) -> UploadProgress:
        backoff = 0.1
        while True:
            try:
                return await self._connection()
            except aiomqtt.MqttError as exc:
                log.warning("upload %s: link lost (%s); reconnecting in %.1f s", self.upload_id, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _connection(self) -> UploadProgress:
        """One broker connection: begin, ask, send what is missing, ask again... until a verdict."""
        async with self.client.connection("ground-uplink-") as mqtt:
            self.stats.connections += 1
            self.stats.chunk_publishes_by_connection.append(0)
            replies: asyncio.Queue[UploadProgress] = asyncio.Queue()
            await mqtt.subscribe(self.progress_topic, qos=1)
            reader = asyncio.create_task(self._read(mqtt, replies))
            try:
                await mqtt.publish(self.topic, self._begin_payload(), qos=1)
                reply = await self._ask(mqtt, reader, replies)
                self.stats.received_on_connect.append(reply.received)
                unknown = 0
                while True:
                    if reply.state.terminal:
                        return reply
                    if reply.state is UploadState.UNKNOWN:  # the begin was lost: send it again
                        unknown += 1
                        if unknown >= BEGIN_ATTEMPTS:
                            raise UploadFailed(
                                f"upload {self.upload_id}: {self.client.topics.sat} did not take the begin "
                                f"{unknown} times in a row: {self.refusal or reply.reason}")
                        await mqtt.publish(self.topic, self._begin_payload(), qos=1)
                    else:
                        unknown = 0
                        missing = from_ranges(reply.missing)
                        self.delivered = set(range(self.n_chunks)) - set(missing)
                        self._report()
                        if missing:
                            await self._send(mqtt, reader, missing)
                        else:
                            await asyncio.sleep(0.2)  # complete but not yet concluded: ask again soon
                    reply = await self._ask(mqtt, reader, replies)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await reader

    async def _read(self, mqtt: aiomqtt.Client, replies: asyncio.Queue[UploadProgress]) -> None:
        async for message in mqtt.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            try:
                replies.put_nowait(decode(bytes(payload), UploadProgress).message)
            except WireError as exc:
                log.warning("upload %s: undecodable progress: %s", self.upload_id, exc)

    async def _until_lost(self, reader: asyncio.Task[None], work: asyncio.Future[Any]) -> Any:
        """The result of ``work``, or _LinkLost as soon as the reader ends (connection gone)."""
        done, _ = await asyncio.wait({work, reader}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await work
        raise _LinkLost("broker connection lost")

    async def _ask(
        self, mqtt: aiomqtt.Client, reader: asyncio.Task[None], replies: asyncio.Queue[UploadProgress]
    ) -> UploadProgress:
        """Send a query and return its answer (or any verdict); the query is repeated while unanswered."""
        while True:
            query_id = new_id("q-")
            await mqtt.publish(self.topic, encode(UploadQuery(upload_id=self.upload_id, query_id=query_id)), qos=1)
            deadline = time.monotonic() + self.reply_timeout_s
            while (left := deadline - time.monotonic()) > 0:
                getter = asyncio.ensure_future(asyncio.wait_for(replies.get(), left))
                try:
                    reply: UploadProgress = await self._until_lost(reader, getter)
                except TimeoutError:
                    break
                if reply.upload_id != self.upload_id:
                    continue
                if reply.reason and reply.reason.startswith("refused message"):
                    self.refusal = reply.reason
                if reply.query_id == query_id or reply.state.terminal:
                    return reply
            log.info("upload %s: no answer from %s within %.1f s; asking again", self.upload_id,
                     self.client.topics.sat, self.reply_timeout_s)

    async def _send(self, mqtt: aiomqtt.Client, reader: asyncio.Task[None], indices: list[int]) -> None:
        """Publish chunks ``indices`` with at most ``window`` awaiting their PUBACK."""
        slots = asyncio.Semaphore(self.window)
        fd = os.open(self.path, os.O_RDONLY)

        async def one(index: int) -> None:
            async with slots:
                start, stop = chunk_span(index, self.manifest.size_bytes, self.chunk_bytes)
                data = os.pread(fd, stop - start, start)
                if len(data) != stop - start:
                    raise UploadFailed(f"{self.path} changed while uploading (short read at chunk {index})")
                header = UploadChunk(upload_id=self.upload_id, index=index, sha256=hashlib.sha256(data).hexdigest())
                self.stats.chunk_publishes += 1
                self.stats.chunk_publishes_by_connection[-1] += 1
                await mqtt.publish(self.topic, encode(header, data), qos=1)
                self.stats.chunks_acked += 1
                self.delivered.add(index)
                self._report()

        try:
            await self._until_lost(reader, asyncio.gather(*(one(i) for i in indices)))
        finally:
            os.close(fd)


async def satellite_limits(client: GroundClient) -> tuple[ModelLimits, str]:
    """The model limits the satellite advertises in its status, else those of the ONNX Runtime installed
    here; and a phrase saying which."""
    status = await client.advertised_status()
    sat = client.topics.sat
    if status is not None and status.model_limits is not None:
        return status.model_limits, f"as {sat} advertises (ONNX Runtime {status.model_limits.onnxruntime})"
    limits = runtime_limits()
    return limits, f"judged by ONNX Runtime {limits.onnxruntime} here: {sat} advertises no model limits"


async def preflight(
    client: GroundClient,
    path: Path,
    name: str,
    version: str,
    *,
    manifest: ModelManifest | None = None,
    quantization: str = "fp32",
) -> ModelManifest:
    """The manifest to upload ``path`` with (``manifest``, or one built from the file) once the file passed
    every check the onboard registry makes (:mod:`flight.model_intake`, against :func:`satellite_limits`),
    the manifest describes it (all but the sha256, which the satellite checks), and ONNX Runtime here loads
    it. Raises :class:`UploadFailed` naming every problem and how to fix it; nothing is published."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UploadFailed(f"model file {path} cannot be read: {exc}") from None
    limits, whose = await satellite_limits(client)
    outline, problems = model_problems(data, limits)
    problems = [p for p in (size_problem(len(data), limits),) if p] + problems
    if outline is not None and not problems:
        if manifest is None:
            try:
                manifest = build_manifest(data, name=name, version=version, quantization=quantization)
            except ModelFileError as exc:
                problems.append(str(exc))
        else:
            problems += manifest_problems(manifest, outline, len(data))
    if not problems and (loading := load_problem(data)):
        problems.append(loading)
    if problems or manifest is None:
        lines = "".join(f"\n  - {p}" for p in problems)
        raise UploadFailed(f"{path} cannot run on {client.topics.sat} ({whose}); nothing was sent:{lines}")
    return manifest


async def upload_model(
    client: GroundClient,
    path: Path,
    name: str,
    version: str,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    window: int = 32,
    timeout_s: float = 3600.0,
    reply_timeout_s: float = 5.0,
    progress: ProgressFn | None = None,
    manifest: ModelManifest | None = None,
    quantization: str = "fp32",
    stats: UploadStats | None = None,
) -> UploadProgress:
    """Upload the ONNX file at ``path`` as ``name``/``version``; returns the satellite's verdict
    (state ``installed`` or ``rejected`` with its reason).

    ``manifest`` defaults to the one built from the file (sha256, size, interface, IR version, opsets).
    Raises :class:`UploadFailed` before anything is sent when :func:`preflight` refuses the file, and when
    no verdict arrives within ``timeout_s`` (s), across any number of reconnections.
    """
    path = Path(path)
    if not path.is_file():
        raise UploadFailed(f"model file {path} does not exist")
    if not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise UploadFailed(f"chunk size must be {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES} bytes, not {chunk_bytes}")
    if window < 1:
        raise UploadFailed("window must be at least 1")
    manifest = await preflight(client, path, name, version, manifest=manifest, quantization=quantization)
    upload_id = upload_id_for(manifest, chunk_bytes)
    chunk_message = chunk_message_bytes(upload_id, min(chunk_bytes, manifest.size_bytes))
    try:
        await client.check_publish_size(client.topics.upload(upload_id), chunk_message, f"upload {upload_id} chunk")
    except GroundError as exc:
        raise UploadFailed(f"{exc}: choose a smaller chunk size") from None
    uploader = _Uploader(
        client, path, manifest, upload_id, chunk_bytes, window, reply_timeout_s,
        progress, stats if stats is not None else UploadStats(),
    )
    try:
        return await asyncio.wait_for(uploader.run(), timeout_s)
    except TimeoutError:
        raise UploadFailed(
            f"upload {uploader.upload_id} of {name}/{version}: no verdict from {client.topics.sat} "
            f"within {timeout_s:.0f} s ({len(uploader.delivered)}/{uploader.n_chunks} chunks delivered); "
            "run the same command again to resume"
        ) from None
