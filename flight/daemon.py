"""flightd: the thin asyncio/MQTT shell around the journal, the registry, the executor and the policy.

The shell does I/O and carries out decisions made by pure code elsewhere: the queue's type and order
(:mod:`flight.queue_policy`), what each dispatcher wake expires, rejects and starts
(:mod:`flight.dispatch`, with the throttle), the governor's modes, budget and admission
(:mod:`flight.governor`), who may ask the satellite for what (:mod:`flight.command_guard`: signatures,
roles, anti-replay; docs/security.md) and what the models directory holds (:mod:`flight.registry`).

Flow of a job: ``jobs/submit`` -> guard (signature, anti-replay window advanced and journaled) ->
decode and validate, guard (the signer's role and priority cap) (a bad one is ``rejected`` with the
reason, on the wire and in the log) -> journal (committed) -> ``queued`` state event (the acknowledgement) ->
dispatcher (:func:`flight.dispatch.plan_wake`) -> executor -> result committed to the journal ->
result published, retained, until the ground acknowledges it (``ack_result``).

Link: an aiomqtt Client, MQTT 3.1.1, persistent session (``clean_session=False``) so the broker keeps
submissions for us across our own restarts, reconnected with exponential backoff after a disconnect, to
the next node of the broker list each time (a clustered broker keeps the session on every node);
subscriptions and retained state are renewed after every connect. The retained ``status`` carries a
last will of ``offline``; never rely on the broker's keepalive for safety (amqtt does not enforce it).
One flightd per satellite id: before every connection and while connected, flightd checks that no
other instance serves its satellite id, and stops when one does (:mod:`flight.session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

import aiomqtt

from flight import __version__
from flight.antireplay import ReplayError, ReplayWindow
from flight.authenticator import RequestAuthenticator
from flight.board import BoardSample
from flight.board_monitor import BoardMonitor, without_board
from flight.command_guard import Admitted, CommandGuard
from flight.dispatch import Throttle, plan_wake
from flight.executor import InferenceExecutor, RunTerminated
from flight.governor import Decision, Governor, GovernorConfig, Sample
from flight.governor.admission import RunningJob
from flight.health import HealthEntry, HealthReport, TaskState
from flight.journal import JobJournal, JobRecord
from flight.journal_writer import JournalWriter
from flight.keyring import COMMAND, JOB, KeyRefused, KeyRing, change_keys, command_request
from flight.metrics import FlightMetrics
from flight.mission_clock import MissionClock
from flight.queue_policy import QueuedJob, deadline_passed
from flight.rate_group import RateGroup
from flight.registry import ModelError, ModelRegistry, check_inputs
from flight.sd_notify import SystemdNotifier
from flight.sequences import SequenceError, SequenceService
from flight.session import Instance, announce, read_status, rival
from flight.settings import FlightSettings
from flight.supervisor import Supervisor, flightd_health
from flight.uplink import UplinkReceiver
from link.auth import AuthError, load_key
from link.codec import MAGIC, WireError, decode, encode, pack_tensors, peek_field, peek_header, unpack_tensors
from link.envelope import peek_body
from link.messages import (
    AckResult,
    ActivateModel,
    AddKey,
    CancelJob,
    Command,
    CommandReply,
    EnergySource,
    Event,
    EventKind,
    GetJob,
    JobRequest,
    JobResult,
    JobState,
    JobStateEvent,
    ListJobs,
    ListKeys,
    ListModels,
    Mode,
    Ping,
    RevokeKey,
    RollbackModel,
    RotateKey,
    Severity,
    Status,
    Telemetry,
)
from link.sequence import SequenceCommand
from link.telemetry import (
    BOARD,
    BOARD_C,
    CLOCK,
    COMPUTE,
    COMPUTE_W,
    MET_S,
    POWER,
    RATE,
    THERMAL,
    compute_values,
    unreadable_values,
    value_problem,
)
from link.topics import TopicMap
from link.transport import BrokerList, make_client, refused_filters

log = logging.getLogger("flightd")


@dataclass
class RunningTask:
    """A job handed to the executor: what the scheduler policy knows of it, and the task running it."""

    job: RunningJob
    task: asyncio.Task[None]


class CommandError(Exception):
    """A command that cannot be carried out; ``str()`` goes back in the reply."""


def _record_dict(r: JobRecord) -> dict[str, Any]:
    return {
        "job_id": r.job_id,
        "state": r.state.value,
        "model": r.model,
        "version": r.version,
        "priority": r.priority,
        "deadline_utc": r.deadline_utc,
        "received_utc": r.received_utc,
        "updated_utc": r.updated_utc,
        "attempt": r.attempt,
        "completions": r.completions,
        "reason": r.reason,
    }


class FlightDaemon:
    """One satellite's onboard job service. ``await daemon.run()`` until :meth:`request_stop`."""

    def __init__(self, settings: FlightSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.topics = TopicMap(settings.sat)
        self.brokers = BrokerList.parse(settings.broker)
        self.url = self.brokers.node(0)  # the node of the current (or next) connection
        journal_path = settings.data_dir / "journal.sqlite3"
        self.journal = JobJournal(journal_path, settings.journal.synchronous)  # reads (and start-up)
        self.metrics = FlightMetrics(settings.sat, __version__)  # served only when settings.metrics.enabled
        self.writer = JournalWriter(journal_path, settings.journal.synchronous,  # every write at run time
                                    on_commit=self.metrics.journal_commit)
        self.registry = ModelRegistry(settings.models_dir, providers=list(settings.executor.providers))
        self.executor = InferenceExecutor(settings.executor.max_concurrency)
        self.throttle = Throttle(settings.executor.max_concurrency, settings.executor.intra_op_threads)
        keys = {kid: load_key(hexkey) for kid, hexkey in settings.security.command_keys.items()}
        self.guard = CommandGuard(keys, settings.security.command_window_s, self.clock,
                                  authenticator=self._authenticator(), persist=self._persist_window)
        self.uplink = UplinkReceiver(
            self.registry, settings.data_dir / "uplink", self.topics, self.clock, guard=self.guard
        )
        self.started_monotonic = time.monotonic()
        self.control = RateGroup("control", settings.control_period_s, self._control_cycle)
        self.telemetry: dict[str, Telemetry] = {}
        self.mission = MissionClock(start_wall_s=time.monotonic())
        governor_config = GovernorConfig.model_validate(settings.governor) if settings.governor is not None else None
        self.board: BoardMonitor | None = None
        board_notes: list[str] = []
        if settings.board.enabled:
            profile = (governor_config or GovernorConfig()).board
            self.board = BoardMonitor(settings.board, fallback_idle_w=profile.idle_w)
            if governor_config is not None:
                governor_config = self.board.fit_governor(governor_config)
        elif governor_config is not None:
            governor_config, board_notes = without_board(governor_config)
        self._board_notes = board_notes
        self.governor = Governor(governor_config) if governor_config is not None else None
        self.sequences = SequenceService(self.journal, self.writer, self.registry, self._submit_onboard,
                                         self._event, self.metrics, self.clock, self.mission)
        self._new_samples: list[Telemetry | Sample] = []
        self.instance = Instance.new(self.clock())
        self.conflict: str | None = None
        """Why this flightd yields its satellite id to another instance (None: it does not)."""
        self._client: aiomqtt.Client | None = None
        self._queue: dict[str, QueuedJob] = {}
        self._requests: dict[str, bytes] = {}
        self._accepting: set[str] = set()
        self._running: dict[str, RunningTask] = {}
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._intake_open = True
        self._pending: set[asyncio.Task[Any]] = set()
        self._last_heartbeat = 0.0
        self._last_busy = (time.monotonic(), 0.0)
        self.jobs_done = 0
        self.supervisor = Supervisor(flightd_health(settings), SystemdNotifier(), self._status_line, self._health_event)

    def _authenticator(self) -> RequestAuthenticator:
        """The journal's key ring and windows, with the configured keys it does not know yet added
        (a key revoked onboard stays revoked; a name in use onboard is not taken over)."""
        security = self.settings.security
        now = self.clock()
        ring = KeyRing.from_records(self.journal.keys().values())
        added = []
        for configured in security.keys:
            entry = configured.entry(added_utc=now)
            if entry.fingerprint in ring.entries:
                continue
            try:
                ring = ring.add(entry)
            except KeyRefused as exc:
                log.error("configured signing key %s not added: %s", configured.name, exc)
                continue
            added.append(entry)
        if added:
            self.journal.save_keys({e.fingerprint: e.to_record() for e in added}, now)
            log.info("signing keys added from the configuration: %s", ", ".join(e.describe() for e in added))
        windows = {fp: ReplayWindow.from_record(r) for fp, r in self.journal.windows().items()}
        return RequestAuthenticator(ring, self.settings.sat, windows=windows, window_size=security.replay_window,
                                    accept_unsigned=security.unsigned_kinds())

    def _persist_window(self, fingerprint: str, window: ReplayWindow) -> asyncio.Future[None]:
        """Journal a key's advanced anti-replay window (durably; queued before anything acted upon)."""
        record = window.to_record()
        future = self.writer.submit(lambda j: j.save_window(fingerprint, record))

        def report(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("anti-replay window of key %s not journaled: %s", fingerprint, f.exception())

        future.add_done_callback(report)
        return future

    # ================================================================================== lifecycle

    def request_stop(self) -> None:
        """Begin a graceful stop (SIGTERM): stop intake, finish or requeue running jobs, exit."""
        self._stop.set()

    async def run(self) -> None:
        self._start()
        self._serve_metrics()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        link = asyncio.create_task(self._link_loop(), name="link")
        dispatcher = asyncio.create_task(self._dispatch_loop(), name="dispatcher")
        control = asyncio.create_task(self.control.run(), name="control")
        board = asyncio.create_task(self._board_loop(), name="board")
        self.supervisor.wake_each_tick("dispatcher", self._wake.set)
        self.supervisor.ping_each_tick("journal", lambda: self.writer.submit(lambda j: None, durable=False))
        supervisor = asyncio.create_task(self.supervisor.run(), name="supervisor")
        try:
            await self._stop.wait()
            await self._shutdown()
        finally:
            for task in (dispatcher, control, link, supervisor, board):
                task.cancel()
            await asyncio.gather(dispatcher, control, link, supervisor, board, return_exceptions=True)
            self.executor.shutdown()
            self.metrics.close()
            self.writer.close()
            self.journal.close()
            log.info("flightd stopped")

    def _start(self) -> None:
        now = self.clock()
        requeued = self.journal.requeue_running(now, "requeued after restart")
        if requeued:
            log.warning("requeued %d job(s) left running by the last stop: %s", len(requeued), ", ".join(requeued))
        for r in self.journal.jobs([JobState.QUEUED]):
            self._queue[r.job_id] = QueuedJob(r.job_id, r.priority, r.model, r.received_utc, r.deadline_utc)
        problems = self.registry.scan()
        self.sequences.load()
        for spec in self.settings.executor.preload:
            name, _, version = spec.partition("/")
            try:
                self.registry.session(self.registry.resolve(name, version or None), self.throttle.intra_op_threads)
            except ModelError as exc:
                log.error("preload %s: %s", spec, exc)
        if not self.guard.enforcing:
            log.warning("no signing or command keys configured: jobs, commands and uploads are accepted unsigned")
        else:
            log.info("signing keys: %d active; accepted unsigned: %s", len(self.guard.ring.active),
                     ", ".join(sorted(self.guard.unsigned_kinds())) or "nothing")
        if self.board is None:
            log.info("board: probes off (board.enabled = false)")
        else:
            log.info("board: %s", self.board.describe())
            for line in self.board.actuators:
                log.info("board: %s", line)
        for note in self._board_notes if self.board is None else self.board.notes:
            log.info("board: %s", note)
        log.info(
            "flightd %s (python %s) sat=%s broker=%s queued=%d models=%s problems=%d",
            __version__,
            platform.python_version(),
            self.settings.sat,
            self.brokers,
            len(self._queue),
            ",".join(sorted(self.registry.models)) or "none",
            len(problems),
        )
        self._wake.set()

    def _serve_metrics(self) -> None:
        m = self.settings.metrics
        if not m.enabled:
            return
        try:
            port = self.metrics.serve(m.host, m.port)
        except OSError as exc:  # metrics are for the operators: flightd runs on without them
            log.error("metrics endpoint on %s:%d not started: %s", m.host, m.port, exc)
            return
        log.info("metrics on http://%s:%d/metrics", m.host, port)

    async def _shutdown(self) -> None:
        log.info("stopping: intake closed, %d job(s) running", len(self._running))
        self.supervisor.stopping(f"stopping: {len(self._running)} job(s) running")
        self._intake_open = False
        client = self._client
        if client is not None and self.conflict is None:  # the session is the rival's: leave it as it is
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(self.topics.job_submit, timeout=2.0)
        self._event(EventKind.LIFECYCLE, "flightd stopping", severity="info")
        if self._running:
            tasks = [r.task for r in self._running.values()]
            _, still = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_s)
            if still:
                for job_id in list(self._running):
                    self.executor.terminate(job_id, "shutdown")
                await asyncio.wait(still, timeout=30)
        if self.board is not None:
            for action in await self.board.release():
                log.info("board: at stop, %s", action.describe())
        await self._publish(self.topics.status, encode(self._offline_status()), retain=True)
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=5)

    # ======================================================================================= link

    def _identity(self) -> dict[str, Any]:
        """What every status says besides the state: the sizes the ground checks, who this flightd is."""
        link, me = self.settings.link, self.instance
        return {"max_payload_bytes": link.max_payload_bytes, "broker_max_packet_bytes": link.broker_max_packet_bytes,
                "instance_id": me.instance_id, "boot_id": me.boot_id, "started_utc": me.started_utc}

    @property
    def _side_clients(self) -> bool:
        """Whether flightd may open short connections of its own besides its session (a status probe,
        a conflict event). Not with TLS: the locked broker names every connection of this
        certificate ``flightd-<sat>`` (``use_username_as_clientid``, docs/security.md), so a second
        connection would take over, and with a clean session wipe, the persistent session."""
        return self.settings.link.tls() is None

    def _offline_status(self) -> Status:
        return Status(sat=self.settings.sat, state="offline", **self._identity())

    def _yield_to_rival(self, seen: Status) -> bool:
        """True (and the stop begun, once) when ``seen`` shows another flightd serving this satellite id."""
        reason = rival(self.instance, seen, self.clock(), self.settings.link.heartbeat_s)
        if reason is None:
            return False
        if self.conflict is None:
            self.conflict = reason
            log.error("stopping: %s", reason)
            event = Event(kind=EventKind.ERROR, severity="critical", message=f"flightd stopping: {reason}",
                          at_utc=self.clock(), details={"instance_id": self.instance.instance_id,
                                                        "rival_instance_id": seen.instance_id})
            if self._side_clients:
                self._background(announce(self.url, self.topics.events, encode(event)), "session conflict event")
            else:  # the locked broker: a client of our own would take the session under our certificate
                self._publish_soon(self.topics.events, encode(event))
            self._stop.set()
        return True

    async def _link_loop(self) -> None:
        will = aiomqtt.Will(self.topics.status, encode(self._offline_status()), qos=1, retain=True)
        backoff = self.settings.link.reconnect_min_s
        attempt = 0
        while True:
            connected_at: float | None = None
            self.supervisor.health.check_in("link")  # alive, connecting or reconnecting
            self.url = self.brokers.node(attempt)
            client = make_client(
                self.url,
                identifier=f"flightd-{self.settings.sat}",
                clean_session=False,
                will=will,
                keepalive_s=self.settings.link.keepalive_s,
                tls=self.settings.link.tls(),
            )
            attempt += 1
            try:
                # Before taking the session: is it someone else's? (Not on the locked broker, where the
                # client id is the certificate's: a probe would take the session; the check on the
                # session's own status subscription still applies there.)
                seen = await read_status(self.url, self.topics) if self._side_clients else None
                if seen is not None and self._yield_to_rival(seen):
                    return
                async with client:
                    self._client = client
                    connected_at = time.monotonic()
                    await self._on_connect(client)
                    async for message in client.messages:
                        self.supervisor.health.check_in("link")
                        if message.topic.matches(self.topics.status) and self._rival_status(message.payload):
                            return  # leave the session at once: take nothing more from it
                        self._route(message)
            except aiomqtt.MqttError as exc:
                if connected_at is not None and time.monotonic() - connected_at >= self.settings.link.stable_s:
                    backoff = self.settings.link.reconnect_min_s  # a connection that held: start again from the minimum
                log.warning("link to %s lost or refused (%s); retrying in %.2f s on %s", self.url, exc, backoff,
                            self.brokers.node(attempt))
            finally:
                self._client = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.link.reconnect_max_s)

    def _rival_status(self, payload: object) -> bool:
        if not isinstance(payload, bytes | bytearray) or not payload:
            return False
        try:
            return self._yield_to_rival(decode(bytes(payload), Status).message)
        except WireError as exc:
            log.warning("undecodable message on our status topic: %s", exc)
            return False

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        t = self.topics
        subscriptions = [(t.command, 1), (t.sequence_command, 1), (t.telemetry_all, 0), (t.upload_all, 1),
                         (t.status, 1)]
        if self._intake_open:
            subscriptions.append((t.job_submit, 1))
        refused = refused_filters(subscriptions, await client.subscribe(subscriptions))
        if refused:  # e.g. a cluster without a stream leader for a moment: connect again (next node)
            raise aiomqtt.MqttError(f"{self.url} refused the subscription to {', '.join(refused)}")
        log.info("connected to %s; subscribed to %s", self.url, ", ".join(s for s, _ in subscriptions))
        self._heartbeat()
        for job_id in list(self._queue) + list(self._running):
            record = self.journal.get(job_id)
            if record is not None:
                self._publish_state(record)
        for job_id in self.journal.unacked_results():
            payload = self.journal.result(job_id)
            if payload:
                self._publish_soon(t.result(job_id), payload, retain=True)
                record = self.journal.get(job_id)
                if record is not None:
                    self._publish_state(record)
        self.supervisor.mark_ready()  # the journal is open (since __init__) and the broker connected

    async def _publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Publish and wait (at most 10 s) for the broker's PUBACK; False when that fails."""
        client = self._client
        if client is None or self.conflict is not None:  # a flightd that yields publishes nothing in the session
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=10.0)
        except aiomqtt.MqttError as exc:
            log.debug("publish to %s failed: %s", topic, exc)
            return False
        self.supervisor.health.check_in("link")  # the broker acknowledged: the link works
        return True

    def _background(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run ``coro`` as a task of its own; an exception is logged and published, never lost."""
        task = asyncio.create_task(coro)
        self._pending.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._pending.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                log.error("%s failed: %s", what, exc, exc_info=exc)
                self._event(EventKind.ERROR, f"{what} failed: {exc}", severity="error")

        task.add_done_callback(done)

    def _publish_soon(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish without waiting for the PUBACK; order of calls is the order on the wire."""
        task = asyncio.create_task(self._publish(topic, payload, qos, retain))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _publish_state(self, r: JobRecord, retain: bool = True) -> None:
        event = JobStateEvent(
            job_id=r.job_id,
            state=r.state,
            at_utc=r.updated_utc,
            reason=r.reason,
            model=r.model,
            attempt=r.attempt,
            priority=r.priority,
            deadline_utc=r.deadline_utc,
        )
        self._publish_soon(self.topics.job_state(r.job_id), encode(event), retain=retain)

    def _event(self, kind: EventKind, message: str, severity: Severity = "info", **fields: Any) -> None:
        job_id = fields.pop("job_id", None)
        event = Event(
            kind=kind, severity=severity, message=message, at_utc=self.clock(), job_id=job_id, details=fields
        )
        self._publish_soon(self.topics.events, encode(event))

    def _route(self, message: aiomqtt.Message) -> None:
        """Hand an incoming message to its handler; nothing that arrives may take the daemon down."""
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        payload = bytes(payload)
        topic = message.topic
        try:
            if topic.matches(self.topics.job_submit):
                self._on_submit(payload)
            elif topic.matches(self.topics.command):
                self._background(self._on_command(payload), "command")
            elif topic.matches(self.topics.sequence_command):
                self._background(self._on_command(payload, SequenceCommand), "sequence command")
            elif topic.matches(self.topics.telemetry_all):
                self._on_telemetry(payload)
            elif topic.matches(self.topics.upload_all):
                for out_topic, out_payload in self.uplink.on_message(str(topic), payload):
                    self._publish_soon(out_topic, out_payload)
        except Exception as exc:
            log.exception("unhandled error on %s", topic)
            self._event(EventKind.ERROR, f"internal error handling {topic}: {exc}", severity="error")

    # ===================================================================================== intake

    def _reject(self, job_id: str | None, reason: str, payload_bytes: int) -> None:
        log.warning("rejected job %s (%d bytes): %s", job_id or "<unreadable id>", payload_bytes, reason)
        if job_id is not None:
            event = JobStateEvent(job_id=job_id, state=JobState.REJECTED, at_utc=self.clock(), reason=reason)
            self._publish_soon(self.topics.job_state(job_id), encode(event))
        self._event(EventKind.REJECTED, reason, severity="warning", job_id=job_id, payload_bytes=payload_bytes)

    def _on_submit(self, payload: bytes) -> None:
        limit = self.settings.link.max_payload_bytes
        claimed_id = peek_field(peek_body(payload), "job_id")  # unverified: only to name a refusal
        if len(payload) > limit:
            reason = f"payload of {len(payload)} bytes exceeds the {limit}-byte limit"
            self._reject(claimed_id, reason, len(payload))
            return
        try:
            # The signer's advanced window is journaled with the job (one commit), or alone if refused.
            admitted = self.guard.open(payload, JOB, write_window=False)
        except ReplayError as exc:
            # Signed and verified, but seen before: a redelivery of a journaled job is answered as a
            # duplicate (its state again, never a second run); anything else is a refused replay.
            if claimed_id is not None and self.journal.get(claimed_id) is not None:
                log.info("job %s: %s; answered as a duplicate", claimed_id, exc)
                self._duplicate(claimed_id)
            else:
                self._reject(claimed_id, str(exc), len(payload))
            return
        except AuthError as exc:
            self._reject(claimed_id, str(exc), len(payload))
            return
        accepted = False
        try:
            accepted = self._intake(admitted, len(payload))
        finally:
            if not accepted:
                self.guard.write_window(admitted)

    def _submit_onboard(self, payload: bytes) -> None:
        """A job flightd asks for itself (a sequence's firing, :mod:`flight.sequences`): the ordinary
        intake (checks, journal, governor) without the guard's signature and role checks, which the
        sequence passed when it was uploaded (a command, with its signer's role)."""
        self._intake(Admitted(payload), len(payload), onboard=True)

    def _intake(self, admitted: Admitted, payload_bytes: int, onboard: bool = False) -> bool:
        """Decode, authorise (unless ``onboard``) and check a job the guard let in; True when it goes on
        to be journaled."""
        try:
            decoded = decode(admitted.body, JobRequest)
        except WireError as exc:
            self._reject(peek_field(admitted.body, "job_id"), str(exc), payload_bytes)
            return False
        req = decoded.message
        try:
            if not onboard:
                self.guard.check(req, issued_utc=None, what="job", kind=JOB, admitted=admitted,
                                 priority=req.priority)
        except AuthError as exc:
            self._reject(req.job_id, str(exc), payload_bytes)
            return False
        if req.job_id in self._accepting:
            log.info("job %s is being journaled already: duplicate ignored", req.job_id)
            return False
        if self.journal.get(req.job_id) is not None:
            self._duplicate(req.job_id)
            return False
        try:
            entry = self.registry.resolve(req.model, req.version)
            check_inputs(entry.manifest, unpack_tensors(req.inputs, decoded.binary))
            self.registry.session(entry, self.throttle.intra_op_threads)  # a model ORT cannot load is refused now
        except (ModelError, WireError) as exc:
            self._reject(req.job_id, str(exc), payload_bytes)
            return False
        now = self.clock()
        state = JobState.QUEUED
        reason_text: str | None = None
        if deadline_passed(req.deadline_utc, now):
            state, reason_text = JobState.EXPIRED, f"deadline {req.deadline_utc:.3f} already past at intake ({now:.3f})"
        self._accepting.add(req.job_id)
        self._background(self._accept(req, entry.manifest.version, bytes(admitted.body), now, state, reason_text,
                                      admitted), f"intake of {req.job_id}")
        return True

    def _duplicate(self, job_id: str) -> None:
        """A job id journaled before: publish its state (and result) again; it never runs twice."""
        existing = self.journal.get(job_id)
        if existing is None:
            return
        log.info("job %s already journaled (%s): not run again", job_id, existing.state)
        self._publish_state(existing)
        result = self.journal.result(job_id) if existing.state is JobState.DONE else None
        if result:
            self._publish_soon(self.topics.result(job_id), result, retain=True)

    async def _accept(
        self, req: JobRequest, version: str, payload: bytes, now: float, state: JobState, reason: str | None,
        admitted: Admitted | None = None,
    ) -> None:
        """Journal the job (durably, in one transaction with its signer's advanced window and its
        owner), then acknowledge it with its first state event. ``payload``: the unsigned request."""
        signer = None if admitted is None else admitted.signer
        window = None if admitted is None or admitted.window is None else admitted.window.to_record()

        def journal(j: JobJournal) -> bool:
            if signer is not None and window is not None:
                j.save_window(signer.fingerprint, window)
            return j.add(req.job_id, req.model, version, req.priority, req.deadline_utc, payload, now, state,
                         reason, owner=None if signer is None else signer.name)

        try:
            inserted = await self.writer.submit(journal)
        except Exception as exc:
            self._reject(req.job_id, f"journal write failed, job not accepted: {exc}", len(payload))
            return
        finally:
            self._accepting.discard(req.job_id)
        record = self.journal.get(req.job_id)
        assert record is not None
        self._publish_state(record)
        if inserted and state is JobState.QUEUED:
            self._queue[req.job_id] = QueuedJob(req.job_id, req.priority, req.model, now, req.deadline_utc)
            self._requests[req.job_id] = payload
            self._wake.set()

    # ================================================================================= dispatcher

    async def _dispatch_loop(self) -> None:
        hang_file = self.settings.supervision.test_hang_dispatcher_file
        while True:
            if hang_file is not None and hang_file.exists():
                log.error("TEST fault hook: %s exists, the dispatcher hangs now", hang_file)
                await asyncio.Event().wait()
            self.supervisor.health.check_in("dispatcher")  # woken at least every supervisor tick
            await self._wake.wait()
            self._wake.clear()
            step = plan_wake(
                self.clock(),
                list(self._queue.values()),
                [r.job for r in self._running.values()],
                self.throttle,
                intake_open=self._intake_open,
                governor=self.governor,
                rate=self.mission.rate,
            )
            for job, reason in step.expire:
                self._queue.pop(job.job_id, None)
                self._background(self._finish(job.job_id, JobState.EXPIRED, reason), f"expiry of {job.job_id}")
            for job, reason in step.reject:
                self._queue.pop(job.job_id, None)
                self._background(self._finish(job.job_id, JobState.REJECTED, reason), f"rejection of {job.job_id}")
            for job in step.start:
                del self._queue[job.job_id]
                task = asyncio.create_task(self._run_job(job.job_id), name=job.job_id)
                self._running[job.job_id] = RunningTask(RunningJob(job.job_id, job.model, job.units), task)

    async def _finish(self, job_id: str, state: JobState, reason: str | None) -> None:
        """Move a queued or running job to a terminal state other than done."""
        self._queue.pop(job_id, None)
        self._requests.pop(job_id, None)
        now = self.clock()
        record = await self.writer.submit(lambda j: j.set_state(job_id, state, now, reason))
        log.info("job %s %s: %s", job_id, state, reason)
        self._publish_state(record)

    async def _requeue(self, job_id: str, reason: str) -> None:
        now = self.clock()
        record = await self.writer.submit(lambda j: j.set_state(job_id, JobState.QUEUED, now, reason))
        self._queue[job_id] = QueuedJob(job_id, record.priority, record.model, record.received_utc, record.deadline_utc)
        log.info("job %s requeued: %s", job_id, reason)
        self._publish_state(record)

    async def _run_job(self, job_id: str) -> None:
        threads = self.throttle.intra_op_threads
        metered = False  # the board's energy meter counts this job as running
        try:
            # The running mark is not waited for (it need not be durable, see JobJournal.set_state):
            # the writer applies it before this job's completion, which is queued after it.
            now = self.clock()
            queued = self.journal.get(job_id)  # before the running mark: the writer may apply it at once
            if queued is None:
                raise KeyError(f"job {job_id} is not in the journal")
            self.writer.submit(lambda j: j.set_state(job_id, JobState.RUNNING, now), durable=False)
            record = replace(queued, state=JobState.RUNNING, updated_utc=now, reason=None, attempt=queued.attempt + 1)
            self._publish_state(record)
            payload = self._requests.pop(job_id, None) or self.journal.request(job_id)
            decoded = decode(payload, JobRequest)
            req = decoded.message
            entry = self.registry.resolve(req.model, record.version)
            session = self.registry.session(entry, threads)
            feeds = unpack_tensors(req.inputs, decoded.binary)
            if self.board is not None:
                self.board.job_started(job_id, len(self._running))
                metered = True
            outcome = await self.executor.run(job_id, session, feeds, threads)
            energy_j = await self.board.job_finished(job_id, len(self._running)) if metered and self.board else None
            metered = False
        except RunTerminated as exc:
            if exc.reason == "cancel":
                await self._finish(job_id, JobState.CANCELLED, "cancelled by ground command while running")
            else:
                await self._requeue(job_id, f"preempted ({exc.reason})")
        except (ModelError, WireError, KeyError) as exc:
            await self._finish(job_id, JobState.FAILED, str(exc))
        except Exception as exc:
            log.exception("job %s failed", job_id)
            await self._finish(job_id, JobState.FAILED, f"inference error: {exc}")
        else:
            finished = self.clock()
            started = finished - outcome.run_s
            source: EnergySource | None = "measured" if energy_j is not None else None
            if energy_j is None and self.governor is not None:  # no power sensor: the board profile's estimate
                energy_j, source = outcome.run_s * threads * self.governor.config.board.w_per_core, "estimated"
            tensors, binary = pack_tensors(outcome.outputs, framed=payload[: len(MAGIC)] == MAGIC)
            result = JobResult(
                job_id=job_id,
                model=entry.manifest.name,
                version=entry.manifest.version,
                outputs=tensors,
                started_utc=started,
                finished_utc=finished,
                run_ms=outcome.run_s * 1e3,
                provider=outcome.provider,
                attempt=record.attempt,
                energy_j=energy_j,
                energy_source=source,
            )
            result_payload = encode(result, binary)
            done = await self.writer.submit(lambda j: j.complete(job_id, result_payload, finished))
            self.jobs_done += 1
            self.metrics.inference(entry.manifest.name, outcome.run_s)
            if self.governor is not None:  # measured energy where the board has a sensor, else the estimate
                self.governor.record_run(entry.manifest.name, outcome.run_s, threads,
                                         energy_j=energy_j if source == "measured" else None)
            # State before result: once the ground holds the result, the retained state already says done.
            self._publish_state(done)
            self._publish_soon(self.topics.result(job_id), result_payload, retain=True)
        finally:
            if metered and self.board is not None:
                self.board.job_ended(job_id)
            self._running.pop(job_id, None)
            self._wake.set()

    def preempt_all(self, reason: str) -> list[str]:
        """Stop every running job at its next graph node; they are requeued, never lost."""
        return [job_id for job_id in list(self._running) if self.executor.terminate(job_id, reason)]

    # =================================================================================== commands

    async def _on_command(self, payload: bytes, envelope: type[Command | SequenceCommand] = Command) -> None:
        """A command (``envelope`` :class:`Command` on ``cmd``, :class:`SequenceCommand` on ``seq/cmd``):
        opened, authorised and carried out; the reply on ``cmd/<command_id>/reply`` either way."""
        command_id = peek_field(peek_body(payload), "command_id")  # unverified: only to address a refusal
        try:
            admitted = self.guard.open(payload, COMMAND)
            command = decode(admitted.body, envelope).message
            body = command.body
            owner = self.journal.owner(body.job_id) if isinstance(body, CancelJob | AckResult) else None
            self.guard.check(command, issued_utc=command.issued_utc, received=peek_header(admitted.body),
                             once_id=command.command_id, admitted=admitted, asks=command_request(body.action),
                             owner=owner)
            await self._persisted(admitted)
            if isinstance(command, SequenceCommand):
                data = await self.sequences.execute(command.body)
            else:
                data = await self._execute(command)
        except (WireError, AuthError, CommandError, ModelError, SequenceError) as exc:
            log.warning("command %s refused: %s", command_id or "<unreadable id>", exc)
            self._event(EventKind.ERROR, f"command refused: {exc}", severity="warning", command_id=command_id)
            if command_id is not None:
                reply = CommandReply(command_id=command_id, ok=False, error=str(exc))
                self._publish_soon(self.topics.command_reply(command_id), encode(reply))
            return
        reply = CommandReply(command_id=command.command_id, ok=True, data=data)
        self._publish_soon(self.topics.command_reply(command.command_id), encode(reply))

    @staticmethod
    async def _persisted(admitted: Admitted) -> None:
        """Wait until the signer's advanced window is journaled: a request is acted on only then."""
        if admitted.persisted is not None:
            try:
                await admitted.persisted
            except Exception as exc:
                raise CommandError(f"journal write failed, not carried out: {exc}") from None

    async def _execute(self, command: Command) -> Any:
        body = command.body
        if isinstance(body, Ping):
            h = self.control.health
            return {"pong_utc": self.clock(), "uptime_s": time.monotonic() - self.started_monotonic,
                    "control_cycles": h.cycles, "control_overruns": h.overruns,
                    "control_max_slip_ms": h.max_slip_s * 1e3}
        if isinstance(body, GetJob | CancelJob | AckResult):
            record = self.journal.get(body.job_id)
            if record is None:
                raise CommandError(f"unknown job {body.job_id!r}")
            if isinstance(body, GetJob):
                return _record_dict(record)
            if isinstance(body, CancelJob):
                return await self._cancel(record)
            return await self._ack_result(record)
        if isinstance(body, ListJobs):
            return [_record_dict(r) for r in self.journal.jobs(body.states, body.limit)]
        if isinstance(body, ListModels):
            return self.registry.listing()
        if isinstance(body, ActivateModel):
            previous = self.registry.activate(body.name, body.version)
            self._event(EventKind.MODEL, f"model {body.name} version {body.version} active", previous=previous)
            return {"name": body.name, "active": body.version, "previous": previous}
        if isinstance(body, RollbackModel):
            version = self.registry.rollback(body.name)
            self._event(EventKind.MODEL, f"model {body.name} rolled back to {version}")
            return {"name": body.name, "active": version}
        if isinstance(body, ListKeys):
            return self.guard.ring.summary()
        if isinstance(body, AddKey | RotateKey | RevokeKey):
            now = self.clock()
            change = change_keys(self.guard.ring, body, now)
            records = {e.fingerprint: e.to_record() for e in change.changed}
            await self.writer.submit(lambda j: j.save_keys(records, now))
            self.guard.replace_ring(change.ring)
            log.warning("%s (command %s)", change.message, command.command_id)
            self._event(EventKind.LIFECYCLE, change.message, severity="warning", command_id=command.command_id)
            return change.reply()
        raise CommandError(f"unsupported command {body.action}")  # pragma: no cover - union is exhaustive

    async def _cancel(self, record: JobRecord) -> dict[str, Any]:
        if record.state is JobState.QUEUED and record.job_id in self._queue:
            await self._finish(record.job_id, JobState.CANCELLED, "cancelled by ground command")
            return {"job_id": record.job_id, "state": JobState.CANCELLED.value}
        if record.state is JobState.RUNNING and self.executor.terminate(record.job_id, "cancel"):
            return {"job_id": record.job_id, "state": "cancelling"}
        raise CommandError(f"job {record.job_id} is {record.state.value}: nothing to cancel")

    async def _ack_result(self, record: JobRecord) -> dict[str, Any]:
        now = self.clock()
        if not await self.writer.submit(lambda j: j.ack_result(record.job_id, now)):
            raise CommandError(f"job {record.job_id} has no unacknowledged result")
        self._publish_soon(self.topics.result(record.job_id), b"", retain=True)
        return {"job_id": record.job_id, "acked": True}

    # ============================================================================ telemetry, cycle

    def _on_telemetry(self, payload: bytes) -> None:
        try:
            sample = decode(payload, Telemetry).message
        except WireError as exc:
            log.warning("bad telemetry: %s", exc)
            channel = peek_field(payload, "channel")
            if channel is not None and channel not in (COMPUTE, BOARD):  # garbage fails its limits (flight.governor)
                now_s = self.mission.now(time.monotonic())
                self._new_samples.append(Sample(channel, now_s, unreadable_values(channel)))
            return
        if sample.channel == CLOCK:  # a simulator's time tone: the mission clock only, not the governor
            self.mission.tone(sample.t_s, time.monotonic(), sample.values.get(RATE), sample.values.get(MET_S))
        elif sample.channel not in (COMPUTE, BOARD):  # not our own channels, echoed by the broker
            self.metrics.board(power_w=sample.values.get(COMPUTE_W) if sample.channel == POWER else None,
                               temperature_c=sample.values.get(BOARD_C) if sample.channel == THERMAL else None)
            self.telemetry[sample.channel] = sample
            self.mission.observe(sample.t_s, time.monotonic())
            self._new_samples.append(sample)
            self.sequences.observe(sample)

    def _status_line(self) -> str:
        """systemd's STATUS= (``systemctl status flightd``)."""
        link = "online" if self._client is not None else "link down"
        return (f"{link}, mode {self.throttle.mode.value}, {len(self._queue)} queued, "
                f"{len(self._running)} running, {self.jobs_done} done")

    def _health_event(self, entry: HealthEntry, report: HealthReport) -> None:
        """A task going late, fatal or back to health, on the wire."""
        severities: dict[TaskState, Severity] = {TaskState.OK: "info", TaskState.WARN: "warning",
                                                 TaskState.FATAL: "error"}
        severity = severities[entry.state]
        kind = EventKind.LIFECYCLE if entry.state is TaskState.OK else EventKind.ERROR
        self._event(kind, f"task {entry.name} {entry.state.value}", severity=severity, task=entry.name,
                    age_s=round(entry.age_s(report.at_s), 3), period_s=entry.period_s,
                    warn_count=entry.warn_count, fatal_count=entry.fatal_count)

    def _heartbeat(self) -> None:
        t = self.throttle
        h = self.control.health
        status = Status(
            sat=self.settings.sat,
            state="online",
            at_utc=self.clock(),
            flightd_version=__version__,
            uptime_s=time.monotonic() - self.started_monotonic,
            heartbeat_s=self.settings.link.heartbeat_s,
            mode=t.mode,
            queue_depth=len(self._queue),
            running=sorted(self.executor.running()),
            concurrency=t.concurrency,
            intra_op_threads=t.intra_op_threads,
            duty_cycle=t.duty_cycle,
            budget_w=t.budget_w,
            providers=self.registry.providers_in_use() or self.registry.available_providers(),
            models=[f"{m['name']}/{m['version']}" for m in self.registry.listing() if m["active"]],
            cycle_slip_ms=h.max_slip_s * 1e3,
            board=self.board.status() if self.board is not None else None,
            **self._identity(),
            keys=sorted(e.fingerprint for e in self.guard.ring.active),
        )
        self._publish_soon(self.topics.status, encode(status), retain=True)

    def _compute_sample(self) -> Telemetry:
        now_m = time.monotonic()
        busy = self.executor.busy_core_seconds(now_m)
        last_m, last_busy = self._last_busy
        self._last_busy = (now_m, busy)
        t = self.throttle
        values = compute_values(
            busy_cores=(busy - last_busy) / max(now_m - last_m, 1e-6),
            running=len(self.executor.running()),
            queued=len(self._queue),
            jobs_done=self.jobs_done,
            concurrency=t.concurrency,
            intra_op_threads=t.intra_op_threads,
            duty_cycle=t.duty_cycle,
            mode=t.mode,
            budget_w=t.budget_w,
        )
        return Telemetry(
            sat=self.settings.sat,
            channel=COMPUTE,
            t_s=self.mission.now(now_m),
            at_utc=self.clock(),
            values=values,
        )

    def _govern(self) -> None:
        """One governor decision applied to the throttle; preemption and mode events on the wire."""
        samples, self._new_samples = self._new_samples, []  # taken even without a governor: never piles up
        if self.governor is None:
            return
        now_s = self.mission.now(time.monotonic())
        d = self.governor.update(now_s, samples)
        executor = self.settings.executor
        self.throttle = Throttle.from_decision(d, executor.max_concurrency, executor.intra_op_threads)
        self.executor.set_throttle(self.throttle.executor_slots, self.throttle.duty_cycle)
        for text in d.limit_events:
            log.warning("limit %s", text)
            self._event(EventKind.LIMIT, text, severity="warning", t_s=now_s)
        if d.mode_changed:
            log.warning("mode %s at t=%.1f s: %s", d.mode.value, now_s, "; ".join(d.reasons))
            self._event(EventKind.MODE, f"mode {d.mode.value}", severity="warning" if d.mode is Mode.SAFE else "info",
                        mode=d.mode.value, t_s=now_s, reasons=list(d.reasons))
        if d.preempt and self._running:
            stopped = self.preempt_all(f"{d.mode.value} mode")
            log.warning("preempted %s", ", ".join(stopped))
        if self.board is not None and self.board.wants(d):
            self._background(self._actuate(d), "board actuators")
        self._wake.set()

    async def _actuate(self, d: Decision) -> None:
        """The governor's frequency ceiling and power mode on the board; each outcome logged and on the wire."""
        assert self.board is not None
        for action in await self.board.actuate(d):
            text = f"{d.mode.value} mode: {action.describe()}"
            if action.ok:
                log.info("board: %s", text)
            else:
                log.warning("board: %s", text)
            self._event(EventKind.BOARD, text, severity="info" if action.ok else "warning", actuator=action.actuator,
                        requested=action.requested, ok=action.ok, applied=action.applied, detail=action.detail)

    # ==================================================================================== board

    async def _board_loop(self) -> None:
        if self.board is not None:
            await self.board.run(self._on_board_sample, lambda: len(self._running))

    def _on_board_sample(self, sample: BoardSample) -> None:
        """One board sample: on ``tlm/board`` and to the governor."""
        values: dict[str, float] = {}
        for key, value in sample.values().items():
            problem = value_problem(BOARD, key, value)
            if problem is None:
                values[key] = value
            else:  # a sensor answering nonsense: left out of the sample, said in the log
                log.warning("board: %s (left out of tlm/board)", problem)
        if not values:
            return
        telemetry = Telemetry(sat=self.settings.sat, channel=BOARD, t_s=max(0.0, self.mission.now(sample.t_s)),
                              at_utc=self.clock(), values=values)
        self._publish_soon(self.topics.telemetry(BOARD), encode(telemetry), qos=0)
        if self.governor is not None:
            self._new_samples.append(telemetry)

    async def _purge(self, cutoff_utc: float) -> None:
        """Forget old terminal jobs, and clear their retained state and result from the broker."""
        for job_id in await self.writer.submit(lambda j: j.purge(cutoff_utc)):
            self._publish_soon(self.topics.job_state(job_id), b"", retain=True)
            self._publish_soon(self.topics.result(job_id), b"", retain=True)

    async def _control_cycle(self) -> None:
        self.supervisor.health.check_in("control")
        self._govern()
        if self._intake_open:  # mission time is a timebase once plant telemetry has anchored it
            self.sequences.cycle(self.mission.now(time.monotonic()) if self.telemetry else None)
        t, h = self.throttle, self.control.health
        self.metrics.control_cycle(mode=t.mode, budget_w=t.budget_w, queued=len(self._queue),
                                   running=len(self._running), slip_s=h.last_slip_s, overruns=h.overruns)
        sample = self._compute_sample()
        self._publish_soon(self.topics.telemetry("compute"), encode(sample), qos=0)
        now_m = time.monotonic()
        if now_m - self._last_heartbeat >= self.settings.link.heartbeat_s:
            self._last_heartbeat = now_m
            self._heartbeat()
            self.metrics.job_counts(self.journal.counts())
            cutoff = self.clock() - self.settings.journal.retention_s
            self._background(self._purge(cutoff), "journal purge")
        if self._queue:
            self._wake.set()
