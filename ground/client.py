"""The async ground client that the ``ground`` CLI, the tests, the benchmarks and scripts share.

    async with GroundClient("mqtt://127.0.0.1:1883", "sat1") as ground:
        job = await ground.submit("digits-int8", {"image": x})
        result = await ground.wait_result(job.job_id)   # acknowledged onboard unless ack=False

A submission counts as accepted once flightd's first state event for it arrives (it is journaled by
then). Until then the client publishes the same request again (job ids are idempotent onboard, so a
retry never runs a job twice); if none arrives, :class:`NotAcknowledged` names the job id, which may
still run (it waits on the ground broker for the next contact): send it again under the same id, never
under a new one.

Across a space link with passes (docs/hil.md), waiting for the satellite is the wrong shape:
:meth:`GroundClient.send_job` returns once the *ground broker* holds the job (its PUBACK), the bridge
carries it at the next acquisition, and the caller follows states and results as they come down
(:meth:`GroundClient.watch_topic` on the job trees), acknowledging results with
:meth:`GroundClient.send_command` (no reply awaited). Receivers drop duplicates by job id: delivery
through the bridge is at least once.

Sizes are checked on the ground before anything is published (:meth:`GroundClient.check_publish_size`):
a payload larger than the limit flightd advertises in its retained status (``max_payload_bytes``), or
an MQTT packet larger than the broker's ``max_packet_size`` (given to the client, or advertised by
flightd as ``broker_max_packet_bytes``), raises :class:`PayloadTooLarge` naming the limit. The
client keeps the latest status from a subscription it holds while connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import aiomqtt
import numpy as np

from ground.signer import Signer
from link.auth import sign
from link.codec import WireError, decode, encode, pack_tensors, unpack_tensors
from link.envelope import overhead
from link.messages import (
    AckResult,
    ActivateModel,
    CancelJob,
    Command,
    CommandAction,
    CommandReply,
    GetJob,
    JobRequest,
    JobResult,
    JobState,
    JobStateEvent,
    ListJobs,
    ListModels,
    Ping,
    Redundancy,
    RollbackModel,
    Status,
    WireModel,
)
from link.sequence import SequenceAction, SequenceCommand
from link.topics import TopicMap
from link.transport import (
    BrokerList,
    BrokerUrl,
    TlsFiles,
    make_client,
    publish_packet_bytes,
    subscribe_until_granted,
)

Arrays = dict[str, np.ndarray[Any, Any]]
M = TypeVar("M", bound=WireModel)


class GroundError(RuntimeError):
    """Anything the ground must report as a failure; ``str()`` is a one-line explanation."""


class JobRejected(GroundError):
    pass


class JobFailed(GroundError):
    def __init__(self, event: JobStateEvent) -> None:
        super().__init__(f"job {event.job_id} {event.state.value}: {event.reason or 'no reason given'}")
        self.event = event


class CommandFailed(GroundError):
    pass


class NotAcknowledged(GroundError):
    """No state event for a submitted job within the attempts: the satellite may be out of contact, and
    the job may still arrive there (the broker may hold it) and run, so it must not be sent to another
    satellite as if it never will. ``job_id``: send it again under this id (flightd runs an id once),
    never under a new one."""

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class PayloadTooLarge(GroundError):
    """A payload the satellite or the broker would refuse for its size; nothing was published."""


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    ack: JobStateEvent
    submit_attempts: int


@dataclass(frozen=True)
class PreparedJob:
    """A job request encoded for the wire: its id and the payload published (again) for it."""

    job_id: str
    payload: bytes


@dataclass(frozen=True)
class FetchedResult:
    result: JobResult
    outputs: Arrays


def _fetched(payload: bytes) -> FetchedResult:
    """A result message decoded, its tensors copied out of the payload; GroundError if undecodable."""
    try:
        decoded = decode(payload, JobResult)
        outputs = unpack_tensors(decoded.message.outputs, decoded.binary)
    except WireError as exc:
        raise GroundError(f"undecodable result: {exc}") from None
    return FetchedResult(decoded.message, {k: v.copy() for k, v in outputs.items()})


def new_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:20]}"


RESULT_REFRESH_S = 15.0
"""Seconds :meth:`GroundClient.wait_result` waits before asking the broker again for a job's retained
result (a fresh subscription), and again every as many seconds until its timeout."""


class GroundClient:
    """One MQTT connection to the broker serving satellite ``sat``; ``broker`` may list a cluster's
    nodes (``mqtt://a:1883,mqtt://b:1883``): the first that accepts is used, and after a lost
    connection the client reconnects to the next and subscribes again."""

    def __init__(
        self,
        broker: str,
        sat: str,
        *,
        key_id: str | None = None,
        key: bytes | None = None,
        timeout_s: float = 30.0,
        max_packet_bytes: int | None = None,
        signer: Signer | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        """``broker``: a URL or a comma-separated list of a cluster's nodes (link.transport.BrokerList).
        ``signer``: Ed25519 key that signs every job, command and upload begin (link.envelope);
        ``key_id``/``key``: the legacy shared HMAC command key (link.auth), used only without a signer.
        ``tls``: the client's TLS identity for ``mqtts://`` brokers."""
        self.brokers = BrokerList.parse(broker)
        self.url = self.brokers.node(0)  # the node connected to
        self.topics = TopicMap(sat)
        self.key_id = key_id
        self.key = key
        self.signer = signer
        self.tls = tls
        self.timeout_s = timeout_s
        self.max_packet_bytes = max_packet_bytes
        """The broker's ``max_packet_size`` (bytes) when known here; else what flightd advertises."""
        self._status: Status | None = None
        self._status_seen = asyncio.Event()
        self._status_waited = False
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watched: dict[str, asyncio.Queue[tuple[str, bytes]]] = {}
        self._job_queues: dict[str, asyncio.Queue[tuple[str, bytes]]] = {}
        self._patterns: list[tuple[str, asyncio.Queue[tuple[str, bytes]]]] = []
        self._tracking_all = False
        self._subscriptions: dict[str, int] = {}
        self._connected = asyncio.Event()
        self._attempt = 0

    # ------------------------------------------------------------------------------ connection

    def connection(self, prefix: str = "ground-", url: BrokerUrl | None = None) -> aiomqtt.Client:
        """A new (not yet connected) connection to ``url`` (default: the node connected to) with this
        client's TLS identity."""
        return make_client(url or self.url, identifier=new_id(prefix), tls=self.tls)

    def seal(self, payload: bytes) -> bytes:
        """``payload`` signed for this satellite under the next sequence number, or as is without a signer.
        Every publish is sealed anew: a retry is a new message to the satellite's anti-replay window."""
        return payload if self.signer is None else self.signer.seal(payload, self.topics.sat)

    def wire_bytes(self, payload_bytes: int) -> int:
        """How many bytes a payload of ``payload_bytes`` takes on the wire once :meth:`seal` wrapped it."""
        return payload_bytes + (0 if self.signer is None else overhead(self.topics.sat))

    async def __aenter__(self) -> Self:
        """Connect to the first node of the broker list that accepts; GroundError when none does."""
        failures: list[str] = []
        for attempt in range(len(self.brokers)):
            client = self.connection("ground-", self.brokers.node(attempt))
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                failures.append(f"{self.brokers.node(attempt)}: {exc}")
                continue
            self._client, self.url, self._attempt = client, self.brokers.node(attempt), attempt
            break
        else:
            raise GroundError(f"cannot reach broker {'; '.join(failures)}")
        self._connected.set()
        self._reader = asyncio.create_task(self._read())
        await self._subscribe([(self.topics.command_reply_all, 1), (self.topics.status, 1)])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(exc_type, exc, tb)

    @property
    def mqtt(self) -> aiomqtt.Client:
        if self._client is None:
            raise GroundError("client is not connected (use `async with GroundClient(...)`)")
        return self._client

    async def _read(self) -> None:
        """Hand each message to its queues; after a lost connection, reconnect (:meth:`_reconnect`)."""
        while True:
            with contextlib.suppress(aiomqtt.MqttError):
                async for message in self.mqtt.messages:
                    topic = str(message.topic)
                    payload = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b""
                    if topic == self.topics.status and payload:
                        with contextlib.suppress(WireError):
                            self._keep_status(decode(payload, Status).message)
                    queue = self._watched.get(topic)
                    if queue is not None:
                        queue.put_nowait((topic, payload))
                    for pattern, pattern_queue in self._patterns:
                        if message.topic.matches(pattern):
                            pattern_queue.put_nowait((topic, payload))
            await self._reconnect()

    async def _reconnect(self, backoff_max_s: float = 2.0) -> None:
        """Connect to the next node of the list (round robin, backoff from 0.1 s doubling up to
        ``backoff_max_s``) and subscribe again to everything: retained states and results come back,
        other messages sent meanwhile (command replies) are lost and their callers time out. Filters
        the node refuses are asked for again on the same connection until granted
        (:func:`link.transport.subscribe_until_granted`); only a lost connection moves to the next node."""
        self._connected.clear()
        with contextlib.suppress(aiomqtt.MqttError):
            await self.mqtt.__aexit__(None, None, None)
        delay = 0.1
        while True:
            self._attempt += 1
            client = self.connection("ground-", self.brokers.node(self._attempt))
            try:
                await client.__aenter__()
                self._client, self.url = client, self.brokers.node(self._attempt)
                filters = list(self._subscriptions.items())
                if filters:
                    await subscribe_until_granted(client, filters, backoff_max_s=backoff_max_s)
            except aiomqtt.MqttError:
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):  # a graceful DISCONNECT may hang
                    await asyncio.wait_for(client.__aexit__(None, None, None), 5.0)
                await asyncio.sleep(delay)
                delay = min(delay * 2, backoff_max_s)
                continue
            self._connected.set()
            return

    async def _subscribe(self, filters: list[tuple[str, int]]) -> None:
        """Subscribe and remember it, so that a reconnection subscribes again (a subscription that
        fails because the link just dropped is made by that reconnection). A filter the broker refuses
        is asked for again (backoff 0.1 s doubling to 2 s) for ``timeout_s``, then GroundError."""
        self._subscriptions.update(filters)
        try:
            refused = await subscribe_until_granted(self.mqtt, filters, give_up_at=time.monotonic() + self.timeout_s)
        except aiomqtt.MqttError:
            return
        if refused:
            raise GroundError(f"{self.url} refused the subscription to {', '.join(refused)}")

    async def _unsubscribe(self, topics: list[str]) -> None:
        for t in topics:
            self._subscriptions.pop(t, None)
        with contextlib.suppress(aiomqtt.MqttError):
            await self.mqtt.unsubscribe(topics)

    async def _watch(self, *topics: str, subscribe: bool = True) -> asyncio.Queue[tuple[str, bytes]]:
        """One queue receiving every message on ``topics`` from now on (retained ones included)."""
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        for t in topics:
            self._watched[t] = queue
        if subscribe and not (self._tracking_all and all(self._is_job_topic(t) for t in topics)):
            await self._subscribe([(t, 1) for t in topics])
        return queue

    async def watch_topic(self, topic: str) -> asyncio.Queue[tuple[str, bytes]]:
        """Subscribe to ``topic`` (wildcards allowed) and return the queue of (topic, payload) it fills."""
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._patterns.append((topic, queue))
        await self._subscribe([(topic, 1)])
        return queue

    async def watch_messages(self, topic: str, kind: type[M]) -> AsyncIterator[M]:
        """Every message on ``topic`` (wildcards allowed) that decodes as ``kind``, from the subscription
        on (made when the iteration starts); payloads that do not decode are skipped."""
        queue = await self.watch_topic(topic)
        while True:
            _, payload = await queue.get()
            try:
                message = decode(payload, kind).message
            except WireError:
                continue
            yield message

    async def track_all_jobs(self) -> None:
        """Subscribe once to every job's state and result (wildcards) instead of per job: for a
        dispatcher with many jobs in flight. Retained results not yet acknowledged arrive too."""
        await self._subscribe([(self.topics.job_state_all, 1), (self.topics.result_all, 1)])
        self._tracking_all = True

    def _is_job_topic(self, topic: str) -> bool:
        return self.topics.job_id_of(topic) is not None

    async def _unwatch(self, *topics: str) -> None:
        for t in topics:
            self._watched.pop(t, None)
        if self._tracking_all and all(self._is_job_topic(t) for t in topics):
            return
        await self._unsubscribe(list(topics))

    # ------------------------------------------------------------------------------------ jobs

    async def prepare_job(
        self,
        model: str,
        inputs: Arrays,
        *,
        job_id: str | None = None,
        version: str | None = None,
        priority: int = 5,
        deadline_s: float | None = None,
        framed: bool = True,
        redundancy: Redundancy | None = None,
    ) -> PreparedJob:
        """Encode a job request (``deadline_s`` relative to now, ``redundancy`` None: the satellite's
        default); PayloadTooLarge when flightd or the broker would refuse its size."""
        job_id = job_id or new_id("job-")
        now = time.time()
        tensors, binary = pack_tensors(inputs, framed=framed)
        request = JobRequest(
            job_id=job_id,
            model=model,
            version=version,
            inputs=tensors,
            priority=priority,
            deadline_utc=None if deadline_s is None else now + deadline_s,
            submitted_utc=now,
            redundancy=redundancy,
        )
        payload = encode(request, binary)
        await self.check_publish_size(self.topics.job_submit, self.wire_bytes(len(payload)), f"job {job_id}")
        return PreparedJob(job_id, payload)

    async def send_job(self, job: PreparedJob, timeout_s: float | None = None) -> None:
        """Publish ``job`` (QoS 1) and return once the broker holds it (its PUBACK), without waiting for
        the satellite: store and forward across a link with passes. After a lost connection it is
        published again once reconnected (the same id: flightd runs it once). GroundError when the
        broker has not taken it within ``timeout_s`` (default: the client's)."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            try:
                await self.mqtt.publish(self.topics.job_submit, self.seal(job.payload), qos=1, timeout=5.0)
                return
            except aiomqtt.MqttError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GroundError(f"job {job.job_id}: broker {self.url} did not take it ({exc})") from None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._connected.wait(), left)

    async def submit(
        self,
        model: str,
        inputs: Arrays,
        *,
        job_id: str | None = None,
        version: str | None = None,
        priority: int = 5,
        deadline_s: float | None = None,
        framed: bool = True,
        ack_timeout_s: float = 5.0,
        attempts: int = 3,
        redundancy: Redundancy | None = None,
    ) -> SubmittedJob:
        """Send a job and wait for flightd's acknowledgement (its first state event).

        Raises JobRejected with flightd's reason when the job is refused, PayloadTooLarge (before
        publishing) when it is larger than flightd or the broker accepts, NotAcknowledged (naming the
        job id, which may still run) when no state event came. ``deadline_s`` is relative to now;
        ``redundancy`` how the result is checked (None: the satellite's default; docs/radiation.md).
        """
        job = await self.prepare_job(model, inputs, job_id=job_id, version=version, priority=priority,
                                     deadline_s=deadline_s, framed=framed, redundancy=redundancy)
        job_id = job.job_id
        queue = await self._watch(self.topics.job_state(job_id), self.topics.result(job_id))
        self._job_queues[job_id] = queue
        for attempt in range(1, attempts + 1):
            try:  # no PUBACK (link lost, or a cluster electing a stream leader): ours to send again
                await self.mqtt.publish(self.topics.job_submit, self.seal(job.payload), qos=1, timeout=ack_timeout_s)
            except aiomqtt.MqttError:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._connected.wait(), ack_timeout_s)
                continue
            try:
                event = await asyncio.wait_for(self._next_state(queue), ack_timeout_s)
            except TimeoutError:
                continue
            if event.state is JobState.REJECTED:
                await self._forget(job_id)
                raise JobRejected(f"job {job_id} rejected: {event.reason}")
            return SubmittedJob(job_id, event, attempt)
        await self._forget(job_id)
        raise NotAcknowledged(
            job_id,
            f"job {job_id}: no acknowledgement from {self.topics.sat} after {attempts} attempts; it may still "
            f"be delivered and run (out of contact it waits on the ground broker): follow it with `ground watch "
            f"{job_id}`, and if you send it again use --job-id {job_id}, never a new id",
        )

    async def advertised_status(self, wait_s: float = 1.0) -> Status | None:
        """The latest status flightd published (the retained one first), None when there is none; the
        first call waits up to ``wait_s`` for the retained status to arrive."""
        if self._status is None and not self._status_waited:
            self._status_waited = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_seen.wait(), wait_s)
        return self._status

    async def check_publish_size(self, topic: str, payload_bytes: int, what: str) -> None:
        """Raise :class:`PayloadTooLarge` naming the limit when a QoS 1 publish of ``payload_bytes`` on
        ``topic`` would exceed flightd's advertised ``max_payload_bytes`` or the broker's
        ``max_packet_size``; ``what`` names the payload in the message ("job j-1")."""
        status = await self.advertised_status()
        sat = self.topics.sat
        if status is not None and status.max_payload_bytes is not None and payload_bytes > status.max_payload_bytes:
            raise PayloadTooLarge(
                f"{what}: payload of {payload_bytes} bytes exceeds the {status.max_payload_bytes}-byte limit "
                f"flightd on {sat} advertises (link.max_payload_bytes); nothing was sent"
            )
        broker_limit = self.max_packet_bytes
        source = "given to this client"
        if broker_limit is None and status is not None and status.broker_max_packet_bytes is not None:
            broker_limit, source = status.broker_max_packet_bytes, f"advertised by flightd on {sat}"
        packet = publish_packet_bytes(topic, payload_bytes, qos=1)
        if broker_limit is not None and packet > broker_limit:
            raise PayloadTooLarge(
                f"{what}: an MQTT packet of {packet} bytes ({payload_bytes} bytes of payload) exceeds the broker's "
                f"max_packet_size of {broker_limit} bytes ({source}); nothing was sent"
            )

    def _keep_status(self, status: Status) -> None:
        """Keep ``status`` unless it is older than the one held: a retained status sent again on a
        resubscription may be older on a cluster (retained messages reach other nodes best-effort)."""
        held = self._status
        if held is None or held.at_utc is None or status.at_utc is None or status.at_utc >= held.at_utc:
            self._status = status
        self._status_seen.set()

    @property
    def latest_status(self) -> Status | None:
        """The latest status received on the subscription this client holds (retained first; None
        before any): what a fleet dispatcher routes by, without asking again."""
        return self._status

    async def _forget(self, job_id: str) -> None:
        self._job_queues.pop(job_id, None)
        await self._unwatch(self.topics.job_state(job_id), self.topics.result(job_id))

    async def forget(self, job_id: str) -> None:
        """Stop following ``job_id`` (its queue and, unless all jobs are tracked, its subscriptions)."""
        await self._forget(job_id)

    async def _job_queue(self, job_id: str) -> asyncio.Queue[tuple[str, bytes]]:
        queue = self._job_queues.get(job_id)
        if queue is None:
            queue = await self._watch(self.topics.job_state(job_id), self.topics.result(job_id))
            self._job_queues[job_id] = queue
        return queue

    async def next_update(self, job_id: str, timeout_s: float) -> JobStateEvent | FetchedResult | None:
        """The next state event or the result of ``job_id`` (followed since :meth:`submit`, or from now
        on), None when nothing arrived within ``timeout_s``; GroundError for an undecodable result."""
        queue = await self._job_queue(job_id)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                topic, payload = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return None
            if not payload:
                continue
            if topic.endswith("/state"):
                with contextlib.suppress(WireError):
                    return decode(payload, JobStateEvent).message
                continue
            return _fetched(payload)

    async def _next_state(self, queue: asyncio.Queue[tuple[str, bytes]]) -> JobStateEvent:
        while True:
            topic, payload = await queue.get()
            if topic.endswith("/state") and payload:
                with contextlib.suppress(WireError):  # not a state event: not flightd's, wait for its own
                    return decode(payload, JobStateEvent).message

    async def wait_result(self, job_id: str, timeout_s: float | None = None, ack: bool = True) -> FetchedResult:
        """The job's result (waiting for it); JobFailed if the job ends any other way.

        With ``ack`` the result is acknowledged, so flightd frees it.
        """
        queue = await self._job_queue(job_id)
        limit_s = timeout_s or self.timeout_s
        deadline = time.monotonic() + limit_s
        refreshed = False
        try:
            while True:
                try:
                    fetched = await asyncio.wait_for(
                        self._await_result(queue), min(RESULT_REFRESH_S, max(0.0, deadline - time.monotonic())))
                    break
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise GroundError(f"job {job_id}: no result within {limit_s:.0f} s") from None
                # A fresh SUBSCRIBE makes the broker send the retained result again: a cluster node
                # failing over may lose a live delivery (tests/test_nats_cluster.py), never the retained copy.
                refreshed = True
                with contextlib.suppress(aiomqtt.MqttError):
                    await self.mqtt.subscribe(self.topics.result(job_id), qos=1)
        finally:
            await self._forget(job_id)
            if refreshed and self._tracking_all:  # _forget leaves the wildcard's job topics subscribed
                with contextlib.suppress(aiomqtt.MqttError):
                    await self.mqtt.unsubscribe(self.topics.result(job_id))
        if ack:
            await self.ack(job_id)
        return fetched

    async def _await_result(self, queue: asyncio.Queue[tuple[str, bytes]]) -> FetchedResult:
        while True:
            topic, payload = await queue.get()
            if not payload:
                continue
            if topic.endswith("/state"):
                event = decode(payload, JobStateEvent).message
                if event.state.terminal and event.state is not JobState.DONE:
                    raise JobFailed(event)
                continue
            return _fetched(payload)

    async def watch(self, job_id: str) -> AsyncIterator[JobStateEvent]:
        """Every state of ``job_id`` from its current one until a terminal one."""
        queue = await self._watch(self.topics.job_state(job_id))
        try:
            while True:
                event = await self._next_state(queue)
                yield event
                if event.state.terminal:
                    return
        finally:
            await self._unwatch(self.topics.job_state(job_id))

    # -------------------------------------------------------------------------------- commands

    async def command(self, body: CommandAction, timeout_s: float | None = None) -> Any:
        """Send a command and return its reply's data; CommandFailed with flightd's reason otherwise."""
        command = Command(command_id=new_id("cmd-"), issued_utc=time.time(), body=body)
        return await self._request(command, self.topics.command, body.action, timeout_s)

    async def sequence_command(self, body: SequenceAction, timeout_s: float | None = None) -> Any:
        """As :meth:`command`, for a sequence command (:mod:`link.sequence`) on ``seq/cmd``."""
        command = SequenceCommand(command_id=new_id("cmd-"), issued_utc=time.time(), body=body)
        return await self._request(command, self.topics.sequence_command, body.action, timeout_s)

    async def send_command(self, body: CommandAction) -> str:
        """Send a command (signed when the client holds a key) without waiting for its reply: across a
        link with passes the reply comes down at the next contact, if ever wanted. Returns the command
        id. With keys, mind flightd's freshness window (``security.command_window_s``): a command that
        waits out a long gap on the ground broker arrives stale and is refused."""
        command = self._signed(Command(command_id=new_id("cmd-"), issued_utc=time.time(), body=body))
        try:
            await self.mqtt.publish(self.topics.command, self.seal(encode(command)), qos=1)
        except aiomqtt.MqttError as exc:
            raise GroundError(f"{body.action}: link to {self.url} lost ({exc}); send it again") from None
        return command.command_id

    def _signed(self, command: Command | SequenceCommand) -> Command | SequenceCommand:
        """``command`` with the legacy HMAC tag when the client holds only that key (a signer seals the
        encoded command instead: :meth:`seal`)."""
        if self.signer is None and self.key is not None and self.key_id is not None:
            return sign(command, self.key_id, self.key)
        return command

    async def _request(
        self, command: Command | SequenceCommand, topic: str, action: str, timeout_s: float | None
    ) -> Any:
        """Send ``command`` on ``topic``, sealed with the client's signing key (or tagged with its legacy
        HMAC key when it holds only that); its reply's data."""
        command = self._signed(command)
        reply_topic = self.topics.command_reply(command.command_id)
        queue = await self._watch(reply_topic, subscribe=False)
        try:
            await self.mqtt.publish(topic, self.seal(encode(command)), qos=1)
            _, payload = await asyncio.wait_for(queue.get(), timeout_s or self.timeout_s)
        except aiomqtt.MqttError as exc:
            raise GroundError(f"{action}: link to {self.url} lost ({exc}); send it again") from None
        except TimeoutError:
            raise GroundError(
                f"{action}: no reply from {self.topics.sat} within {timeout_s or self.timeout_s:.0f} s"
            ) from None
        finally:
            self._watched.pop(reply_topic, None)
        reply = decode(payload, CommandReply).message
        if not reply.ok:
            raise CommandFailed(f"{action} refused: {reply.error}")
        return reply.data

    async def ack(self, job_id: str) -> Any:
        return await self.command(AckResult(job_id=job_id))

    async def cancel(self, job_id: str) -> Any:
        return await self.command(CancelJob(job_id=job_id))

    async def job(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.command(GetJob(job_id=job_id))
        return data

    async def jobs(self, states: list[JobState] | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = await self.command(ListJobs(states=states, limit=limit))
        return data

    async def ping(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.command(Ping())
        return data

    async def models(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = await self.command(ListModels())
        return data

    async def activate_model(self, name: str, version: str) -> Any:
        return await self.command(ActivateModel(name=name, version=version))

    async def rollback_model(self, name: str) -> Any:
        return await self.command(RollbackModel(name=name))

    async def status(self, timeout_s: float = 5.0) -> Status:
        """The retained status (``offline`` when flightd's link died or it stopped), asked for afresh:
        subscribing again makes the broker send the retained message again."""
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._watched[self.topics.status] = queue
        try:
            await self.mqtt.subscribe(self.topics.status, qos=1)
            while True:
                _, payload = await asyncio.wait_for(queue.get(), timeout_s)
                if payload:
                    try:
                        return decode(payload, Status).message
                    except WireError as exc:
                        raise GroundError(f"undecodable status from {self.topics.sat}: {exc}") from None
        except TimeoutError:
            raise GroundError(f"no status from {self.topics.sat} within {timeout_s:.0f} s (never started?)") from None
        finally:
            self._watched.pop(self.topics.status, None)
