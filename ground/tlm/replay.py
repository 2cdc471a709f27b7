"""Replay of an archive onto a broker with the original relative timing (by receive time), shifted to
now and scaled by ``speed`` — a chain of small handlers in the manner of fprime-gds's replay:

    source (Archive.messages) -> select (drop truncated results) -> rewrite (topic root and sat)
      -> pace (sleep until ~1 ms before the due time, then spin) -> publish (paho, QoS 0 telemetry)
      -> slip accounting (lag of each publish behind its due time)

Without ``as_live`` the topics move under :data:`link.topics.REPLAY_ROOT`, so live consumers never
see the replay; with it they go under :data:`link.topics.LIVE_ROOT` to drive a flightd as if in
flight. Payload bytes are never changed. Nothing is published retained (see docs/telemetry-archive.md).

The publisher is paho's own client driven from the pacing thread (no network thread): a publish
writes straight to the socket, which is what reaches >10k msg/s on two cores.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ground.tlm.archive import Archive, Record
from link.topics import LIVE_ROOT, REPLAY_ROOT, check_id
from link.transport import NODELAY, BrokerUrl, TlsFiles, check_tls

LATE_MS = 5.0
"""A message published more than this many ms after its due time counts as late."""

SPIN_S = 0.0015
"""The pacer sleeps until this long before a due time, then spins (time.sleep overshoots ~0.1-1 ms)."""


# ------------------------------------------------------------------------------------------ handlers


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message on its way out: the rewritten topic, the original payload, its QoS and receive time."""

    topic: str
    payload: bytes
    qos: int
    rx_utc: float


def select(records: Iterable[Record]) -> Iterator[Record]:
    """Drop what cannot be replayed faithfully: results archived as headers only."""
    for record in records:
        if not record.truncated:
            yield record


def rewrite(records: Iterable[Record], *, as_live: bool, sat: str | None) -> Iterator[Outgoing]:
    """Move each message under the replay (or live) root and, if given, another satellite id.
    QoS follows the link: 0 for telemetry, 1 for everything else."""
    root = LIVE_ROOT if as_live else REPLAY_ROOT
    if sat is not None:
        check_id("satellite id", sat)
    for r in records:
        qos = 0 if r.channel.startswith("tlm/") else 1
        yield Outgoing(f"{root}/{sat or r.sat}/{r.suffix}", r.payload, qos, r.rx_utc)


def pace(
    messages: Iterable[Outgoing],
    speed: float,
    *,
    wait: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[tuple[Outgoing, float]]:
    """Yield each message with its due time (``clock`` seconds) once that time has come: the first
    message is due now, the next ``(rx_utc - first rx_utc) / speed`` later. ``wait`` sleeps (or
    services the network) until ~:data:`SPIN_S` before the due time, then the pacer spins.
    ``speed`` = inf: no pacing, every message is due at once."""
    start = clock()
    rx0: float | None = None
    for message in messages:
        if rx0 is None:
            rx0 = message.rx_utc
        if math.isinf(speed):
            yield message, start
            continue
        due = start + (message.rx_utc - rx0) / speed
        remaining = due - clock()
        while remaining > SPIN_S:  # ``wait`` may return early (network activity)
            wait(remaining - SPIN_S)
            remaining = due - clock()
        while clock() < due:
            pass
        yield message, due


@dataclass
class SlipReport:
    """What a replay did: messages sent, how many were late (> ``late_ms`` after their due time), and
    the lag of publishes behind their due times (ms; None at max speed where nothing is due)."""

    sent: int = 0
    late: int = 0
    late_ms: float = LATE_MS
    max_lag_ms: float | None = None
    mean_lag_ms: float | None = None
    duration_s: float = 0.0
    msgs_per_s: float = 0.0
    speed: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["speed"] = "max" if math.isinf(self.speed) else self.speed
        return d

    def summary(self) -> str:
        lag = (
            "no pacing (max speed)"
            if self.mean_lag_ms is None
            else f"lag mean {self.mean_lag_ms:.3f} ms, max {self.max_lag_ms:.3f} ms"
        )
        return (
            f"sent {self.sent} messages in {self.duration_s:.2f} s ({self.msgs_per_s:,.0f} msg/s); "
            f"{self.late} late (> {self.late_ms:g} ms); {lag}"
        )


class SlipAccounting:
    """Accumulates the lag of each publish behind its due time."""

    def __init__(self, speed: float, late_ms: float = LATE_MS, clock: Callable[[], float] = time.perf_counter):
        self.speed = speed
        self.late_ms = late_ms
        self.clock = clock
        self.sent = 0
        self.late = 0
        self.lag_sum_ms = 0.0
        self.lag_max_ms = 0.0
        self.started = clock()

    def account(self, due: float) -> None:
        self.sent += 1
        if math.isinf(self.speed):
            return
        lag_ms = (self.clock() - due) * 1000.0
        self.lag_sum_ms += lag_ms
        if lag_ms > self.lag_max_ms:
            self.lag_max_ms = lag_ms
        if lag_ms > self.late_ms:
            self.late += 1

    def report(self, finished: float | None = None) -> SlipReport:
        duration = (finished if finished is not None else self.clock()) - self.started
        paced = not math.isinf(self.speed) and self.sent > 0
        return SlipReport(
            sent=self.sent,
            late=self.late,
            late_ms=self.late_ms,
            max_lag_ms=self.lag_max_ms if paced else None,
            mean_lag_ms=self.lag_sum_ms / self.sent if paced else None,
            duration_s=duration,
            msgs_per_s=self.sent / duration if duration > 0 else 0.0,
            speed=self.speed,
        )


class PahoPublisher:
    """A paho MQTT 3.1.1 client with no network thread: :meth:`publish` writes to the socket at
    once, :meth:`service` reads acks and keeps the connection alive, :meth:`drain` waits until every
    message is on the wire (QoS 0) or acknowledged (QoS 1)."""

    SERVICE_EVERY = 64

    def __init__(
        self, broker_url: str, *, client_id: str = "", timeout_s: float = 10.0, tls: TlsFiles | None = None
    ) -> None:
        url = BrokerUrl.parse(broker_url)
        check_tls(url, tls)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=True
        )
        if tls is not None:
            self.client.tls_set_context(tls.context())
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        self.client.max_inflight_messages_set(100)
        self._connected: bool | None = None
        self._last: paho.MQTTMessageInfo | None = None
        self._acked: list[paho.MQTTMessageInfo] = []
        self._since_service = 0

        def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            self._connected = not reason.is_failure

        self.client.on_connect = on_connect
        self.client.connect(url.host, url.port, keepalive=30)
        sock = self.client.socket()
        if sock is not None and hasattr(sock, "setsockopt"):
            sock.setsockopt(*NODELAY)
        deadline = time.monotonic() + timeout_s
        while self._connected is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no CONNACK from {url} within {timeout_s} s")
            self.client.loop(0.05)
        if not self._connected:
            raise ConnectionError(f"{url} refused the connection")

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS and info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise ConnectionError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        self._last = info
        if qos:
            self._acked.append(info)
        self._since_service += 1
        if self._since_service >= self.SERVICE_EVERY:
            self.service(0.0)

    def service(self, timeout_s: float) -> None:
        """Read acks, write what is queued, keep alive; blocks at most ``timeout_s`` waiting for I/O."""
        self._since_service = 0
        rc = self.client.loop(timeout_s)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"MQTT connection lost: {paho.error_string(rc)}")
        if len(self._acked) > 1024:
            self._acked = [i for i in self._acked if not i.is_published()]

    def drain(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while (self._last is not None and not self._last.is_published()) or any(
            not i.is_published() for i in self._acked
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("messages still unsent after drain timeout")
            self.service(0.01)
        self._acked.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop(0.05)


# ------------------------------------------------------------------------------------------- replay


def parse_speed(text: str) -> float:
    """``max`` -> inf; otherwise a positive number (1 = real time, 10 = ten times faster)."""
    if text.strip().lower() == "max":
        return math.inf
    speed = float(text)
    if not speed > 0:
        raise ValueError(f"speed must be > 0 or 'max', got {text!r}")
    return speed


def replay(
    archive: Archive | str | Path,
    broker_url: str,
    speed: float = 1.0,
    as_live: bool = False,
    sat: str | None = None,
    channels: Sequence[str] | None = None,
    *,
    sats: Sequence[str] | None = None,
    t_from: float | None = None,
    t_to: float | None = None,
    utc_from: float | None = None,
    utc_to: float | None = None,
    late_ms: float = LATE_MS,
    progress: bool = False,
    tls: TlsFiles | None = None,
) -> SlipReport:
    """Publish the archived messages again (blocking; see :func:`replay_async` inside a loop).

    ``speed``: 1 real time, 10 ten times faster, ``math.inf`` as fast as possible. ``sat`` rewrites
    the satellite id; ``sats`` selects which recorded satellites to replay; ``channels`` and the time
    bounds select as in :meth:`Archive.messages`. ``tls``: the publisher's identity for an ``mqtts://`` broker.
    """
    own = not isinstance(archive, Archive)
    arch = Archive(archive) if not isinstance(archive, Archive) else archive
    try:
        filters: dict[str, Any] = dict(sats=sats, t_from=t_from, t_to=t_to, utc_from=utc_from, utc_to=utc_to)
        total = arch.count(channels, **filters) if progress else 0
        publisher = PahoPublisher(broker_url, tls=tls)
        try:
            slip = SlipAccounting(speed, late_ms)
            source = arch.messages(channels, **filters)
            chain = pace(rewrite(select(source), as_live=as_live, sat=sat), speed, wait=publisher.service)
            with _Progress(total, enabled=progress) as bar:
                for message, due in chain:
                    publisher.publish(message.topic, message.payload, message.qos)
                    slip.account(due)
                    bar.advance(slip.sent)
                publisher.drain()
                finished = time.perf_counter()
                bar.advance(slip.sent, force=True)
        finally:
            publisher.close()
        return slip.report(finished)
    finally:
        if own:
            arch.close()


async def replay_async(*args: Any, **kwargs: Any) -> SlipReport:
    """:func:`replay` in a worker thread, for use from a running event loop (e.g. next to a flightd)."""
    return await asyncio.to_thread(replay, *args, **kwargs)


class _Progress:
    """A rich progress bar on stderr refreshed at most 5 times a second (cheap in the hot loop)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self._next = 0.0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("replay"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                auto_refresh=False,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("replay", total=self.total or None)
        return self

    def advance(self, done: int, *, force: bool = False) -> None:
        if not self.enabled or (not force and done & 0xF):
            return
        now = time.monotonic()
        if force or now >= self._next:
            self._next = now + 0.2
            self._progress.update(self._task, completed=done)
            self._progress.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
