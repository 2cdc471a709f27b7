"""The recorder: subscribes to a satellite's (or every satellite's) telemetry, status, events, job
states and results, and appends them to an :class:`~ground.tlm.archive.Archive` in small batches.

Commit policy: a batch is committed when it holds ``batch_messages`` (100) messages or when its oldest
message has waited ``batch_s`` (0.2 s), whichever comes first, and on a clean stop. A kill -9 therefore
loses at most the last 0.2 s / 100 messages and never what was committed before (docs/telemetry-archive.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiomqtt

from ground.tlm.archive import Archive, Row, Unarchivable, classify, make_row
from link.codec import MAGIC, peek_header
from link.topics import LIVE_ROOT
from link.transport import BrokerUrl, TlsFiles, make_client

ResultsPolicy = Literal["full", "header", "none"]
RECONNECT_S = 1.0
"""Pause before reconnecting after the broker connection is lost (what was buffered is committed first)."""


def subscriptions(sat: str | None, root: str = LIVE_ROOT) -> list[tuple[str, int]]:
    """(topic filter, QoS) pairs for one satellite, or every satellite when ``sat`` is None."""
    base = f"{root}/{sat if sat is not None else '+'}"
    return [
        (f"{base}/tlm/+", 0),
        (f"{base}/status", 1),
        (f"{base}/events", 1),
        (f"{base}/jobs/+/state", 1),
        (f"{base}/results/+", 1),
    ]


def header_only(payload: bytes) -> bytes:
    """The JSON header of a payload (framed payloads lose their tensor bytes)."""
    if payload[: len(MAGIC)] != MAGIC:
        return payload
    doc = peek_header(payload)
    if doc is None:
        return payload[:4096]
    n = int.from_bytes(payload[len(MAGIC) : len(MAGIC) + 4], "little")
    return payload[len(MAGIC) + 4 : len(MAGIC) + 4 + n]


@dataclass
class Recorder:
    """Buffers received messages and commits them in batches; no I/O but the archive's."""

    archive: Archive
    batch_messages: int = 100
    batch_s: float = 0.2
    results: ResultsPolicy = "full"
    received: int = 0
    written: int = 0
    refused: int = 0
    batches: int = 0
    _pending: list[Row] = field(default_factory=list)
    _oldest: float = 0.0

    def add(
        self, topic: str, payload: bytes, qos: int = 0, retained: bool = False, rx_utc: float | None = None
    ) -> None:
        """Buffer one message (ignored when the archive does not keep its topic); commits when full.

        A message holding a non-finite number is not archived: it is counted in ``refused`` and
        reported in one line on stderr."""
        parsed = classify(topic)
        if parsed is None:
            return
        truncated = False
        if parsed.channel == "results":
            if self.results == "none":
                return
            if self.results == "header":
                short = header_only(payload)
                truncated = len(short) != len(payload)
                payload = short
        self.received += 1
        try:
            row = make_row(parsed, payload, time.time() if rx_utc is None else rx_utc, qos, retained, truncated)
        except Unarchivable as exc:
            self.refused += 1
            print(f"recorder: not archived {topic} ({len(payload)} bytes): {exc}", file=sys.stderr, flush=True)
            return
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(row)
        if len(self._pending) >= self.batch_messages:
            self.flush()

    def due(self) -> bool:
        """True when the oldest buffered message has waited ``batch_s``."""
        return bool(self._pending) and time.monotonic() - self._oldest >= self.batch_s

    def flush(self) -> int:
        """Commit what is buffered; the number of messages committed."""
        if not self._pending:
            return 0
        rows, self._pending = self._pending, []
        n = self.archive.append(rows)
        self.written += n
        self.batches += 1
        return n


async def record(
    archive_path: str | Path,
    broker_url: str,
    *,
    sat: str | None,
    root: str = LIVE_ROOT,
    results: ResultsPolicy = "full",
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    batch_messages: int = 100,
    batch_s: float = 0.2,
    on_ready: Callable[[Recorder], None] | None = None,
    stop: asyncio.Event | None = None,
    tls: TlsFiles | None = None,
) -> Recorder:
    """Record until ``stop`` is set or the task is cancelled (committing what is buffered either
    way), reconnecting when the broker connection is lost; ``on_ready`` is called once the first
    subscriptions are acknowledged. ``sat`` None: all satellites. Messages published while the
    recorder is disconnected are lost (clean session; telemetry is QoS 0 anyway). ``tls``: the
    recorder's identity for an ``mqtts://`` broker (``ground-observer`` on the locked broker)."""
    archive = Archive(archive_path, writable=True, synchronous=synchronous)
    recorder = Recorder(archive, batch_messages=batch_messages, batch_s=batch_s, results=results)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(batch_s / 4)
            if recorder.due():
                recorder.flush()

    async def receive(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                payload = str(payload).encode()
            recorder.add(message.topic.value, bytes(payload), int(message.qos), bool(message.retain))

    stop = stop or asyncio.Event()
    announced = False
    try:
        while not stop.is_set():
            try:
                async with make_client(BrokerUrl.parse(broker_url), tls=tls) as client:
                    for topic_filter, qos in subscriptions(sat, root):
                        await client.subscribe(topic_filter, qos=qos)
                    if on_ready is not None and not announced:
                        on_ready(recorder)
                    announced = True
                    tasks: list[asyncio.Task[Any]] = [
                        asyncio.create_task(flusher()),
                        asyncio.create_task(receive(client)),
                        asyncio.create_task(stop.wait()),
                    ]
                    try:
                        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                        for task in done:
                            task.result()
                    finally:
                        for task in tasks:
                            task.cancel()
                        for task in tasks:
                            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                                await task
            except aiomqtt.MqttError as exc:
                if not announced:
                    raise  # never connected: a wrong URL should fail, not spin
                recorder.flush()
                print(f"recorder: broker connection lost ({exc}); reconnecting in {RECONNECT_S:g} s",
                      file=sys.stderr, flush=True)  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RECONNECT_S)
    finally:
        recorder.flush()
        archive.close()
    return recorder


def announce(recorder: Recorder, filters: list[tuple[str, int]]) -> None:
    """Tell the operator (stderr) that the recorder is subscribed; tests wait for this line."""
    print(
        f"recording {', '.join(f for f, _ in filters)} -> {recorder.archive.path}",
        file=sys.stderr,
        flush=True,
    )
