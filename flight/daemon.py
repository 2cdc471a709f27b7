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
subscriptions and retained state are renewed after every connect. flightd never unsubscribes from
``jobs/submit`` (an unsubscribed session keeps nothing): while it stops it goes on journaling what
arrives, as ``queued``, without starting it; and it acknowledges a submission to the broker (PUBACK)
only once the job is journaled or refused, so whatever it had not journaled when it went down, however
it went down, the broker delivers again (docs/icd.md, "Stopping and starting"). The retained
``status`` carries a last will of ``offline``; never rely on the broker's keepalive for safety (amqtt
does not enforce it).
One flightd per satellite id: before every connection and while connected, flightd checks that no
other instance serves its satellite id, and stops when one does (:mod:`flight.session`).

Soft errors (:mod:`flight.radiation.service`, docs/radiation.md): the control cycle scrubs the weights
flightd holds; each job runs under its redundancy mode (the job's, its model's or priority's default,
raised by the governor in a high-flux region) and its result says how it was checked; stored requests
and results are checked against their sha256 when read back, and a result that fails it, or one
computed on weights found corrupt afterwards, is computed again (:meth:`FlightDaemon._recompute`),
never republished wrong.

Storage faults (docs/icd.md, "Storage faults"): the journal is checked at start and a corrupted one
moved aside (:mod:`flight.journal_recovery`); a journal that cannot be opened or written at start is a
start-up error naming the path. At run time a write the storage refuses (disk full, I/O error,
read-only file system) pauses intake (submissions are ``rejected`` with the reason, the status says
``intake: paused``) and starting, with an ``error`` event and log line; the job whose write failed
stays queued, in memory, and a probe write every ``journal.probe_period_s`` resumes everything once
the storage takes writes again. Every long-running task is restarted when it fails
(:func:`flight.supervisor.restart_on_failure`); every other task's exception is logged and published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import platform
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Literal

import aiomqtt

from flight import __version__
from flight.antireplay import ReplayError, ReplayWindow
from flight.authenticator import RequestAuthenticator
from flight.board import BoardSample
from flight.board_monitor import BoardMonitor, without_board
from flight.command_guard import Admitted, CommandGuard
from flight.dispatch import Throttle, plan_wake
from flight.executor import Arrays, InferenceExecutor, RunOutcome, RunsDisagree, RunTerminated
from flight.governor import Decision, Governor, GovernorConfig, Sample
from flight.governor.admission import RunningJob, committed_core_s
from flight.governor.costs import CostModel
from flight.health import HealthEntry, HealthReport, TaskState
from flight.inbox import COMMANDS, SEQUENCE_COMMANDS, STATUS, TELEMETRY, UPLINK_PIPES, Inbox
from flight.journal import JobJournal, JobRecord, JournalFault, StoredCorruption
from flight.journal_recovery import JOURNAL_FILE, open_journal
from flight.journal_writer import JournalWriter
from flight.keyring import COMMAND, JOB, KeyRefused, KeyRing, change_keys, command_request
from flight.metrics import FlightMetrics
from flight.mission_clock import MissionClock
from flight.puback import PubackTracker
from flight.queue_policy import QueuedJob, deadline_passed
from flight.radiation.redundancy import same, strongest
from flight.radiation.service import InjectionRefused, SoftErrorService
from flight.rate_group import RateGroup
from flight.registry import ModelError, ModelRegistry, RegisteredModel, check_inputs
from flight.sd_notify import SystemdNotifier
from flight.sequences import SequenceError, SequenceService
from flight.session import Instance, announce, read_status, rival
from flight.settings import FlightSettings
from flight.supervisor import Supervisor, flightd_health, restart_on_failure
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
    DispatchOutlook,
    EnergySource,
    Event,
    EventKind,
    GetJob,
    InjectFault,
    JobRequest,
    JobResult,
    JobState,
    JobStateEvent,
    ListJobs,
    ListKeys,
    ListModels,
    Mode,
    Ping,
    Redundancy,
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
    FLIGHTD_CHANNELS,
    MET_S,
    POWER,
    RATE,
    SOFT_ERRORS,
    THERMAL,
    compute_values,
    unreadable_values,
    value_problem,
)
from link.topics import TopicMap, topic_matches
from link.transport import BrokerList, acknowledge, make_client, quiet_link_loss, subscribe_until_granted

log = logging.getLogger("flightd")


LINK_CHECK_IN_S = 0.1
"""At most this often (s) a publish the broker acknowledged, or a message received, checks the link in with
the health table (its period is seconds: flight.supervisor); every publish did, a lock and a record copy each,
four per job."""

COMMAND_SLOTS = 4
"""Commands being carried out at once (a command may wait for the journal, or for a model to load);
more wait in their pipe, where a flood sheds the oldest (flight/inbox.py)."""

INBOX_MIN_SERVICE_S = 0.01
"""While the link has more to read, reading goes first (the inbound pipes shed the oldest, not the
newest, of a flood); still, a message waiting in a pipe is handled at least this often (s)."""

LINK_BURST = 8
"""The link counts as reading a burst when this many messages arrived since the inbound pipes' last turn:
the pipes then wait (:data:`INBOX_MIN_SERVICE_S`); one command alone is served at once."""

INBOX_TURN_S = 0.002
"""Longest (s) the inbound pipes are served before the link loop reads on (several messages a turn:
an event loop turn per message would cost more than most handlers)."""

SHED_REPORT_S = 1.0
"""At most this often (s) what the inbound pipes shed is said (one log line, one event): a flood of
10,000 messages is a few lines, not 10,000 (the cFS Software Bus filters its pipe-overflow event)."""

RESULT_WRITE_ATTEMPTS = 3
"""Runs of one job whose result the journal refused (storage faults) before the job is ``failed``."""


@dataclass
class RunningTask:
    """A job handed to the executor: what the scheduler policy knows of it, and the task running it."""

    job: RunningJob
    task: asyncio.Task[None]


class CommandError(Exception):
    """A command that cannot be carried out; ``str()`` goes back in the reply."""


def _nothing() -> None:
    """An acknowledgement with no one to send it to (a job flightd submits to itself)."""


def _read_quietly(future: asyncio.Future[Any]) -> None:
    """Read the outcome of a write nobody awaits: a failure is handled where it matters (see caller)."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.debug("journal write not awaited failed: %s", exc)


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
        journal_path = settings.data_dir / JOURNAL_FILE
        # checked (a corrupted journal moved aside) and shown to take a write; JournalFault if it cannot
        self.journal_start = open_journal(journal_path, settings.journal.synchronous, settings.journal.check_at_start)
        self.journal = JobJournal(journal_path, settings.journal.synchronous)  # reads (and start-up)
        self.metrics = FlightMetrics(settings.sat, __version__)  # served only when settings.metrics.enabled
        self.writer = JournalWriter(journal_path, settings.journal.synchronous,  # every write at run time
                                    on_commit=self.metrics.journal_commit, on_fault=self._on_journal_fault)
        self.storage_fault: JournalFault | None = None
        """Why the journal takes no writes now (None: it does): intake and starting are paused."""
        self._storage_fault_since = 0.0
        self._result_write_failures: dict[str, int] = {}
        self.telemetry_samples = 0
        """Plant telemetry samples taken in for the governor since the start (``ping`` reports it)."""
        self.registry = ModelRegistry(settings.models_dir, providers=list(settings.executor.providers),
                                      radiation=settings.radiation)
        self.executor = InferenceExecutor(settings.executor.max_concurrency, settings.executor.inference_cpus)
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
        self._seed_costs = CostModel(GovernorConfig().board.w_per_core)  # job cost estimates without a governor
        self.sequences = SequenceService(self.journal, self.writer, self.registry, self._submit_onboard,
                                         self._event, self.metrics, self.clock, self.mission)
        self._new_samples: list[Telemetry | Sample] = []
        self.instance = Instance.new(self.clock())
        self.conflict: str | None = None
        """Why this flightd yields its satellite id to another instance (None: it does not)."""
        self._client: aiomqtt.Client | None = None
        self._queue: dict[str, QueuedJob] = {}
        self._requests: dict[str, bytes] = {}
        self._decoded: dict[str, tuple[JobRequest, Arrays, JobRecord]] = {}
        """Queued jobs as decoded and journaled at intake (request, input views into the payload in
        ``_requests``, the record committed), so that a run decodes nothing and reads nothing again."""
        self._link_seen_s = -math.inf
        self._pubacks = PubackTracker()
        """Job states and results awaiting the broker's PUBACK (:meth:`_publish_job`)."""
        self._accepting: dict[str, list[Callable[[], None]]] = {}
        """Jobs being journaled now, with the broker acknowledgements of their duplicates meanwhile."""
        self._running: dict[str, RunningTask] = {}
        self._cancel_before_run: set[str] = set()
        self._unsent: set[str] = set()
        """Jobs a state or result publish of which the broker did not acknowledge (sent again)."""
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        """A stop has begun: nothing starts any more; submissions are still journaled (as ``queued``)."""
        self._pending: set[asyncio.Task[Any]] = set()
        self.inbox: Inbox[tuple[str, bytes]] = Inbox(UPLINK_PIPES)
        """Received commands, sequence commands, telemetry and status, (topic, payload), waiting for their
        handler (:meth:`_inbox_loop`; flight/inbox.py: bounded, served in arrival order, the oldest shed in
        a flood). Job submissions and upload messages are handled by the link loop (:meth:`_route`)."""
        self._inbox_ready = asyncio.Event()
        self._inbox_reported_s = -math.inf
        self._shed_report_due = False
        self._arrivals = 0
        """Messages read from the broker so far (:meth:`_link_busy`)."""
        self._command_slots = asyncio.Semaphore(COMMAND_SLOTS)
        self._last_heartbeat = 0.0
        self._last_busy = (time.monotonic(), 0.0)
        self.jobs_done = 0
        self.soft_errors = SoftErrorService(settings.radiation, self.registry, self._event, self._recompute_soon,
                                            step_s=settings.control_period_s)
        self._recomputing: set[str] = set()
        self.failure: str | None = None
        """Why flightd stopped on its own, a task failing again and again (flightd exits with 1)."""
        self._startup_events: list[Event] = []
        self._said_offline = False
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
        """Begin a graceful stop (SIGTERM): start nothing more, finish or requeue running jobs, exit.
        Submissions arriving meanwhile are journaled ``queued`` and run after the restart."""
        self._stop.set()

    async def run(self) -> None:
        self._start()
        self._serve_metrics()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(quiet_link_loss)  # a node's death leaves one line, not a stack trace
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        tasks = [self._supervised("link", self._link_loop), self._supervised("inbox", self._inbox_loop),
                 self._supervised("dispatcher", self._dispatch_loop),
                 self._supervised("control", self.control.run), self._supervised("journal probe", self._probe_loop),
                 self._supervised("board", self._board_loop)]
        self.supervisor.wake_each_tick("dispatcher", self._wake.set)
        self.supervisor.ping_each_tick("journal", self._ping_journal)
        tasks.append(self._supervised("supervisor", self.supervisor.run))
        try:
            await self._stop.wait()
            await self._shutdown()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.executor.shutdown()
            self.metrics.close()
            self.writer.close()
            self.journal.close()
            log.info("flightd stopped")

    def _supervised(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        """``run()`` as a task that is started again when it fails (flightd stops with exit code 1
        when it fails too often: systemd starts a fresh process); a task that returns is done."""
        return asyncio.create_task(restart_on_failure(name, run, self._task_failed), name=name)

    def _task_failed(self, name: str, exc: BaseException, restart_in_s: float | None) -> None:
        if restart_in_s is None:
            self.failure = f"task {name} failed too often, last: {exc!r}"
            text = f"{self.failure}; flightd stops (exit 1) to be started afresh"
        else:
            text = f"task {name} failed: {exc!r}; restarted in {restart_in_s:.1f} s"
        log.critical("%s", text, exc_info=exc)
        self._event(EventKind.ERROR, text, severity="critical", task=name)
        if restart_in_s is None:
            self._stop.set()

    def _start(self) -> None:
        now = self.clock()
        report = self.journal_start
        if report.problem is not None:
            self._startup_events.append(Event(
                kind=EventKind.ERROR, severity="critical", message=report.describe(), at_utc=now,
                details={"journal": str(report.path), "moved_to": str(report.moved_to), "problem": report.problem,
                         "salvaged": dict(report.salvaged), "unreadable": dict(report.unreadable),
                         "lost_results": list(report.lost_results)}))
        requeued = self.journal.requeue_running(now, "requeued after restart")
        if requeued:
            log.warning("requeued %d job(s) left running by the last stop: %s", len(requeued), ", ".join(requeued))
        for r in self.journal.jobs([JobState.QUEUED]):
            self._queue[r.job_id] = self._queued(r)
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
        if self.soft_errors.injector is not None:
            log.warning("TEST-ONLY fault injection is ENABLED (radiation.test_fault_injection): never in flight")
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
        # Still subscribed to jobs/submit: an unsubscribed persistent session would keep nothing for
        # the restart. What arrives from now on is journaled queued and runs after the restart.
        log.info("stopping: draining, %d job(s) running; nothing more starts, submissions are journaled "
                 "for the restart", len(self._running))
        self.supervisor.stopping(f"stopping: {len(self._running)} job(s) running")
        self._stopping = True
        # intake: draining, awaited so that the offline status below is the last retained one
        await self._publish(self.topics.status, encode(self._online_status()), retain=True)
        self._event(EventKind.LIFECYCLE, "flightd stopping", severity="info")
        drain_until = time.monotonic() + 5
        while len(self.inbox) and time.monotonic() < drain_until:  # acknowledged already: handled before the stop
            await asyncio.sleep(0.01)
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
        self._said_offline = True  # no heartbeat may follow it: a restart would take it for a rival
        await self._publish(self.topics.status, encode(self._offline_status()), retain=True)
        started = time.monotonic()
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=5)
        await self._pubacks.drain(max(0.0, 5 - (time.monotonic() - started)))

    # ======================================================================================= link

    def _identity(self) -> dict[str, Any]:
        """What every status says besides the state: the sizes and model limits the ground checks, who this
        flightd is."""
        link, me = self.settings.link, self.instance
        return {"max_payload_bytes": link.max_payload_bytes, "broker_max_packet_bytes": link.broker_max_packet_bytes,
                "instance_id": me.instance_id, "boot_id": me.boot_id, "started_utc": me.started_utc,
                "model_limits": self.registry.limits}

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
                manual_ack=True,  # a submission is acknowledged once journaled (_on_submit)
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
                        if not self._receive(client, message):
                            return  # a rival's session: leave it at once
                        while len(client.messages):  # what paho read meanwhile: without aiomqtt's task and wait each
                            if not self._receive(client, client._queue.get_nowait()):
                                return
            except aiomqtt.MqttError as exc:
                if connected_at is not None and time.monotonic() - connected_at >= self.settings.link.stable_s:
                    backoff = self.settings.link.reconnect_min_s  # a connection that held: start again from the minimum
                log.warning("link to %s lost or refused (%s); retrying in %.2f s on %s", self.url, exc, backoff,
                            self.brokers.node(attempt))
            finally:
                self._client = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.link.reconnect_max_s)

    def _receive(self, client: aiomqtt.Client, message: aiomqtt.Message) -> bool:
        """One message read from ``client``: routed (:meth:`_route`); False, and nothing taken, once a
        rival's status was seen (:meth:`_rival_status`): the session must be left at once."""
        if self.conflict is not None:
            return False
        self._arrivals += 1
        self._link_works()
        self._route(message, self._acknowledger(client, message))
        return True

    def _rival_status(self, payload: object) -> bool:
        """True when ``payload`` on our status topic shows a rival (:meth:`_yield_to_rival`). Anything
        else that is not our own status is one WARNING line, an empty one (someone cleared the retained
        status; the next heartbeat publishes it again) included."""
        if not isinstance(payload, bytes | bytearray):
            return False
        if not payload:
            log.warning("empty message on our status topic: the retained status was cleared by another client")
            return False
        try:
            return self._yield_to_rival(decode(bytes(payload), Status).message)
        except WireError as exc:
            log.warning("undecodable message on our status topic: %s", exc)
            return False

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        t = self.topics
        subscriptions = [(t.command, 1), (t.sequence_command, 1), (t.telemetry_all, 0), (t.upload_all, 1),
                         (t.status, 1), (t.job_submit, 1)]
        # A cluster without a stream leader for a moment refuses filters: asked again on this connection
        # (link.transport.subscribe_until_granted), for half the link's health period, then the next node.
        give_up_at = time.monotonic() + self.settings.supervision.link_period_s / 2
        refused = await subscribe_until_granted(client, subscriptions, give_up_at=give_up_at)
        if refused:
            raise aiomqtt.MqttError(f"{self.url} refused the subscription to {', '.join(refused)}")
        log.info("connected to %s; subscribed to %s", self.url, ", ".join(s for s, _ in subscriptions))
        self._heartbeat()
        self.soft_errors.announce()
        for event in self._startup_events:  # said once, to the first broker that hears it
            self._publish_soon(self.topics.events, encode(event))
        self._startup_events.clear()
        try:
            self._republish()
        except JournalFault as exc:  # the retained copies on the broker stand meanwhile
            log.error("states and results not published again after the connect: %s", exc)
            self._on_journal_fault(exc)
        self.supervisor.mark_ready()  # the journal is open (since __init__) and the broker connected

    def _republish(self) -> None:
        """After a connect: the state of every job onboard, and every result not yet acknowledged."""
        for job_id in list(self._queue) + list(self._running):
            record = self.journal.get(job_id)
            if record is not None:
                self._publish_state(record)
        for job_id in self.journal.unacked_results():
            payload = self._stored_result(job_id)
            if payload:
                self._publish_job(job_id, self.topics.result(job_id), payload)
                record = self.journal.get(job_id)
                if record is not None:
                    self._publish_state(record)
        self._resend_unsent()

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
        self._link_works()
        return True

    def _link_works(self) -> None:
        """The broker acknowledged a publish, or a message arrived: the link works (told the health table
        at most every LINK_CHECK_IN_S)."""
        now = time.monotonic()
        if now - self._link_seen_s >= LINK_CHECK_IN_S:
            self._link_seen_s = now
            self.supervisor.health.check_in("link")

    def _background(self, coro: Coroutine[Any, Any, Any], what: str, name: str | None = None,
                    pending: bool = True) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of its own; an exception is logged and published, never lost.
        ``pending``: a stop waits for it (at most 5 s) before flightd disconnects."""
        task = asyncio.create_task(coro, name=name)
        if pending:
            self._pending.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._pending.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                log.error("%s failed: %s", what, exc, exc_info=exc)
                self._event(EventKind.ERROR, f"{what} failed: {exc}", severity="error")

        task.add_done_callback(done)
        return task

    def _publish_soon(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish without waiting: handed to paho at once (the order of calls is the order on the
        wire), a QoS 1 one followed to its PUBACK by :class:`~flight.puback.PubackTracker` (no task
        per message: a flood's refusals are two publishes each). One that fails (no link, no PUBACK
        within 10 s) is a debug line, not published: an event about a failed publish could fail the
        same way (a job's states and results go by :meth:`_publish_job`, which sends them again)."""
        client = self._client
        if client is None or self.conflict is not None:  # a flightd that yields publishes nothing in the session
            return

        def done(ok: bool) -> None:
            if ok:
                self._link_works()
            else:
                log.debug("publish to %s failed (no link, or no PUBACK in time)", topic)

        try:
            if qos == 0:
                client._client.publish(topic, payload, 0, retain)
            else:
                self._pubacks.publish(client, topic, payload, retain, done)
        except Exception as exc:  # paho refuses the message itself (ValueError): sending it again would fail again
            log.error("publish to %s failed: %r", topic, exc)

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
        self._publish_job(r.job_id, self.topics.job_state(r.job_id), encode(event), retain=retain)

    def _publish_job(self, job_id: str, topic: str, payload: bytes, retain: bool = True) -> None:
        """Publish a job's state or result (QoS 1, in call order), handed to paho at once and followed
        to its PUBACK by :class:`~flight.puback.PubackTracker` (no task per message). One the broker
        does not acknowledge (within 10 s) is not dropped: the job's latest state, and its result
        while unacknowledged, are published again at the next heartbeat or connection
        (:meth:`_resend_unsent`). A cluster electing stream leaders after a node died times publishes
        out for seconds: a job's acknowledgement lost then left the ground waiting for it
        (tests/test_nats_cluster.py)."""

        def done(ok: bool) -> None:
            if ok:
                self._link_works()
            else:
                self._unsent.add(job_id)

        client = self._client
        if client is None or self.conflict is not None:  # a flightd that yields publishes nothing in the session
            done(False)
            return
        try:
            self._pubacks.publish(client, topic, payload, retain, done)
        except Exception as exc:  # paho refuses the message itself (ValueError): sending it again would fail again
            log.error("publish to %s failed: %r", topic, exc)

    def _resend_unsent(self) -> None:
        """Publish again the latest state (and the unacknowledged result) of every job a publish of
        which failed; those that fail again stay for the next call."""
        if self._client is None or not self._unsent:
            return
        unsent, self._unsent = self._unsent, set()
        for job_id in sorted(unsent):
            record = self.journal.get(job_id)
            if record is None:
                continue
            log.debug("job %s: publishing its %s state again", job_id, record.state)
            self._publish_state(record)
            result = self._stored_result(job_id) if record.state is JobState.DONE else None
            if result:
                self._publish_job(job_id, self.topics.result(job_id), result)

    def _event(self, kind: EventKind, message: str, severity: Severity = "info", **fields: Any) -> None:
        job_id = fields.pop("job_id", None)
        event = Event(
            kind=kind, severity=severity, message=message, at_utc=self.clock(), job_id=job_id, details=fields
        )
        self._publish_soon(self.topics.events, encode(event))

    @staticmethod
    def _acknowledger(client: aiomqtt.Client, message: aiomqtt.Message) -> Callable[[], None]:
        """The broker acknowledgement (PUBACK) of ``message``, sent at most once when called."""
        sent = False

        def ack() -> None:
            nonlocal sent
            if not sent:
                sent = True
                acknowledge(client, message)

        return ack

    def _route(self, message: aiomqtt.Message, ack: Callable[[], None]) -> None:
        """Take an incoming message; nothing that arrives may take the daemon down.

        A job submission or an upload message is handled here and acknowledged to the broker (``ack``,
        its PUBACK) once handled: a submission once journaled or refused (:meth:`_on_submit`), an upload
        chunk once written, so the broker holds back what flightd has not taken yet (an upload is paced
        by it, and nothing of either is ever shed). Anything else is acknowledged at once and waits in
        its pipe of :attr:`inbox` for :meth:`_inbox_loop` (the oldest shed in a flood): the broker's
        queue for this session then holds no backlog that a command would wait behind."""
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        payload = bytes(payload)
        topic = message.topic.value
        if topic == self.topics.job_submit or topic_matches(topic, self.topics.upload_all):
            try:
                if topic == self.topics.job_submit:
                    self._on_submit(payload, ack)
                    return
                for out_topic, out_payload in self.uplink.on_message(str(topic), payload):
                    self._publish_soon(out_topic, out_payload)
            except Exception as exc:
                log.exception("unhandled error on %s", topic)
                self._event(EventKind.ERROR, f"internal error handling {topic}: {exc}", severity="error")
            ack()  # handled, if badly: delivering it again would fail again
            return
        ack()
        if topic == self.topics.command:
            pipe = COMMANDS
        elif topic == self.topics.sequence_command:
            pipe = SEQUENCE_COMMANDS
        elif topic_matches(topic, self.topics.telemetry_all):
            pipe = TELEMETRY
        elif topic == self.topics.status:
            pipe = STATUS
        else:
            return  # not subscribed to
        self.inbox.put(pipe, (topic, payload), len(payload))
        self._inbox_ready.set()

    async def _inbox_loop(self) -> None:
        """Hand what waits in :attr:`inbox` to its handler, in arrival order, in turns of at most
        :data:`INBOX_TURN_S` between which the link loop reads on; what a pipe shed is reported
        (:meth:`_report_shed`). While read messages wait for the link loop, reading goes first (so a
        flood is shed oldest first in the pipes, not queued at the broker), but a turn still comes at
        least every :data:`INBOX_MIN_SERVICE_S`. A command runs as a task of its own (it may wait for
        the journal or a model), at most :data:`COMMAND_SLOTS` at once."""
        served_s, arrivals = time.monotonic(), self._arrivals
        while True:
            await self._inbox_ready.wait()
            now = time.monotonic()
            if self._link_busy(self._arrivals - arrivals) and now - served_s < INBOX_MIN_SERVICE_S:
                await asyncio.sleep(0)
                continue
            turn_ends_s = now + INBOX_TURN_S
            while (taken := self.inbox.take()) is not None:
                await self._handle_inbound(*taken)
                if time.monotonic() >= turn_ends_s:
                    break
            else:
                self._inbox_ready.clear()
            served_s, arrivals = time.monotonic(), self._arrivals
            self._report_shed()
            await asyncio.sleep(0)  # the link loop reads what arrived meanwhile

    async def _handle_inbound(self, pipe: str, message: tuple[str, bytes]) -> None:
        """One message from pipe ``pipe`` of :attr:`inbox`, (topic, payload), to its handler; nothing
        it holds may take the daemon down."""
        topic, payload = message
        try:
            if pipe in (COMMANDS, SEQUENCE_COMMANDS):
                await self._command_slots.acquire()
                envelope = Command if pipe == COMMANDS else SequenceCommand
                self._background(self._command_in_slot(payload, envelope), pipe.rstrip("s"))
            elif pipe == TELEMETRY:
                self._on_telemetry(payload, topic)
            else:
                self._rival_status(payload)  # a rival's: flightd stops, the link loop takes nothing more
        except Exception as exc:
            log.exception("unhandled error on %s", topic)
            self._event(EventKind.ERROR, f"internal error handling {topic}: {exc}", severity="error")

    def _link_busy(self, arrived: int) -> bool:
        """Whether the link is reading a burst: messages read from the broker wait for the link loop,
        or ``arrived`` (since the pipes' last turn) reached :data:`LINK_BURST`."""
        client = self._client
        return client is not None and (len(client.messages) > 0 or arrived >= LINK_BURST)

    async def _command_in_slot(self, payload: bytes, envelope: type[Command | SequenceCommand]) -> None:
        try:
            await self._on_command(payload, envelope)
        finally:
            self._command_slots.release()

    def _report_shed(self) -> None:
        """Say what the pipes shed: at once when the last report is :data:`SHED_REPORT_S` old, else
        once that much has passed (a timer), so a flood is a line and an event a second, its tail included."""
        if self._shed_report_due or not any(self.inbox.shed.values()):
            return
        wait_s = self._inbox_reported_s + SHED_REPORT_S - time.monotonic()
        if wait_s > 0:
            self._shed_report_due = True
            asyncio.get_running_loop().call_later(wait_s, self._say_shed)
        else:
            self._say_shed()

    def _say_shed(self) -> None:
        """One WARNING line, one ``error`` event and the metric for what the pipes shed since the last."""
        self._shed_report_due = False
        shed = self.inbox.take_shed()
        if not shed:
            return
        self._inbox_reported_s = time.monotonic()
        said = ", ".join(f"{n} {pipe}" for pipe, n in shed.items())
        text = f"inbound flood: shed {said} (the oldest waiting; pipes full: {self._pipe_depths(shed)})"
        log.warning("%s", text)
        self._event(EventKind.ERROR, text, severity="warning", shed=shed)
        self.metrics.shed(shed)

    def _pipe_depths(self, shed: dict[str, int]) -> str:
        return ", ".join(f"{pipe} {self.inbox.pipes[pipe].depth}" for pipe in shed)

    # ===================================================================================== intake

    def _reject(self, job_id: str | None, reason: str, payload_bytes: int) -> None:
        log.warning("rejected job %s (%d bytes): %s", job_id or "<unreadable id>", payload_bytes, reason)
        if job_id is not None:
            event = JobStateEvent(job_id=job_id, state=JobState.REJECTED, at_utc=self.clock(), reason=reason)
            self._publish_soon(self.topics.job_state(job_id), encode(event))
        self._event(EventKind.REJECTED, reason, severity="warning", job_id=job_id, payload_bytes=payload_bytes)

    def _on_submit(self, payload: bytes, ack: Callable[[], None] | None = None) -> None:
        """A job submission: refused (``rejected`` with the reason), or journaled and acknowledged
        (``queued``). ``ack`` (the broker's PUBACK) is called once the job is journaled or refused, or
        recognised as one journaled already (a redelivery after a restart is not run again)."""
        ack = ack or _nothing

        def claimed() -> str | None:  # unverified: only to name a refusal (read only for one: a parse)
            return peek_field(peek_body(payload), "job_id")

        if self.storage_fault is not None:
            self._reject(claimed(), f"intake paused: {self._intake_state()[1]}; send it again later", len(payload))
            ack()
            return
        limit = self.settings.link.max_payload_bytes
        if len(payload) > limit:
            reason = f"payload of {len(payload)} bytes exceeds the {limit}-byte limit"
            self._reject(claimed(), reason, len(payload))
            ack()
            return
        try:
            # The signer's advanced window is journaled with the job (one commit), or alone if refused.
            admitted = self.guard.open(payload, JOB, write_window=False)
        except ReplayError as exc:
            # Signed and verified, but seen before: a redelivery of a journaled job is answered as a
            # duplicate (its state again, never a second run); anything else is a refused replay.
            claimed_id = claimed()
            try:
                journaled = claimed_id is not None and self.journal.get(claimed_id) is not None
            except JournalFault as fault:
                self._journal_unreadable(claimed_id, fault, len(payload))
                journaled = None
            if journaled and claimed_id is not None:
                log.info("job %s: %s; answered as a duplicate", claimed_id, exc)
                self._duplicate(claimed_id)
            elif journaled is False:
                self._reject(claimed_id, str(exc), len(payload))
            ack()
            return
        except AuthError as exc:
            self._reject(claimed(), str(exc), len(payload))
            ack()
            return
        accepted = False
        try:
            accepted = self._intake(admitted, len(payload), ack=ack)
        finally:
            if not accepted:
                self.guard.write_window(admitted)

    def _submit_onboard(self, payload: bytes) -> None:
        """A job flightd asks for itself (a sequence's firing, :mod:`flight.sequences`): the ordinary
        intake (checks, journal, governor) without the guard's signature and role checks, which the
        sequence passed when it was uploaded (a command, with its signer's role)."""
        if self.storage_fault is not None:
            self._reject(peek_field(payload, "job_id"), f"intake paused: {self._intake_state()[1]}", len(payload))
            return
        self._intake(Admitted(payload), len(payload), onboard=True)

    def _intake(self, admitted: Admitted, payload_bytes: int, onboard: bool = False,
                ack: Callable[[], None] = _nothing) -> bool:
        """Decode, authorise (unless ``onboard``) and check a job the guard let in; True when it goes on
        to be journaled (``ack`` is then called by :meth:`_accept`; here on every other way out, but
        for a copy of a job being journaled now, acknowledged with it)."""
        body = bytes(admitted.body)  # the bytes journaled and kept: the decoded inputs are views into them
        try:
            decoded = decode(body, JobRequest)
        except WireError as exc:
            self._reject(peek_field(body, "job_id"), str(exc), payload_bytes)
            ack()
            return False
        req = decoded.message
        try:
            if not onboard:
                self.guard.check(req, issued_utc=None, what="job", kind=JOB, admitted=admitted,
                                 priority=req.priority)
        except AuthError as exc:
            self._reject(req.job_id, str(exc), payload_bytes)
            ack()
            return False
        if req.job_id in self._accepting:
            log.info("job %s is being journaled already: duplicate ignored", req.job_id)
            self._accepting[req.job_id].append(ack)  # acknowledged once the first copy is journaled
            return False
        try:
            journaled = self.journal.get(req.job_id) is not None
        except JournalFault as exc:
            self._journal_unreadable(req.job_id, exc, payload_bytes)
            ack()
            return False
        if journaled:
            self._duplicate(req.job_id)
            ack()
            return False
        try:
            entry = self.registry.resolve(req.model, req.version)
            feeds = unpack_tensors(req.inputs, decoded.binary)
            check_inputs(entry.manifest, feeds)
            self.registry.session(entry, self.throttle.intra_op_threads)  # a model ORT cannot load is refused now
        except (ModelError, WireError) as exc:
            self._reject(req.job_id, str(exc), payload_bytes)
            ack()
            return False
        now = self.clock()
        state = JobState.QUEUED
        reason_text: str | None = None
        if deadline_passed(req.deadline_utc, now):
            state, reason_text = JobState.EXPIRED, f"deadline {req.deadline_utc:.3f} already past at intake ({now:.3f})"
        self._accepting[req.job_id] = [ack]
        self._background(self._accept(req, entry.manifest.version, body, now, state, reason_text,
                                      admitted, feeds), f"intake of {req.job_id}")
        return True

    def _journal_unreadable(self, job_id: str | None, fault: JournalFault, payload_bytes: int) -> None:
        """A read of the journal failed at intake: pause intake, and refuse the job with the reason."""
        self._on_journal_fault(fault)
        self._reject(job_id, f"intake paused: {fault}; send it again later", payload_bytes)

    def _duplicate(self, job_id: str) -> None:
        """A job id journaled before: publish its state (and result) again; it never runs twice."""
        try:
            existing = self.journal.get(job_id)
            result = self._stored_result(job_id) if existing is not None and existing.state is JobState.DONE else None
        except JournalFault as exc:  # the broker's retained copies stand meanwhile
            self._on_journal_fault(exc)
            return
        if existing is None:
            return
        log.info("job %s already journaled (%s): not run again", job_id, existing.state)
        self._publish_state(existing)
        if result:
            self._publish_job(job_id, self.topics.result(job_id), result)

    async def _accept(
        self, req: JobRequest, version: str, payload: bytes, now: float, state: JobState, reason: str | None,
        admitted: Admitted | None = None, feeds: Arrays | None = None,
    ) -> None:
        """Journal the job (durably, in one transaction with its signer's advanced window and its
        owner), then acknowledge it with its first state event, and to the broker. ``payload``: the
        unsigned request; ``feeds``: its inputs decoded (kept for the run)."""
        signer = None if admitted is None else admitted.signer
        window = None if admitted is None or admitted.window is None else admitted.window.to_record()

        def journal(j: JobJournal) -> tuple[bool, JobRecord | None]:
            if signer is not None and window is not None:
                j.save_window(signer.fingerprint, window)
            inserted = j.add(req.job_id, req.model, version, req.priority, req.deadline_utc, payload, now, state,
                             reason, owner=None if signer is None else signer.name)
            return inserted, j.get(req.job_id)  # read on the writer's connection: what it committed

        try:
            inserted, record = await self.writer.submit(journal)
        except Exception as exc:
            self._reject(req.job_id, f"journal write failed, job not accepted: {exc}", len(payload))
            return
        finally:
            for ack in self._accepting.pop(req.job_id, []):
                ack()
        if record is not None:
            self._publish_state(record)
        if inserted and state is JobState.QUEUED:
            asked = req.redundancy or self.settings.radiation.default_redundancy(req.model, req.priority)
            self._queue[req.job_id] = QueuedJob(req.job_id, req.priority, req.model, now, req.deadline_utc,
                                                redundancy=asked)
            self._requests[req.job_id] = payload
            if feeds is not None and record is not None:
                self._decoded[req.job_id] = (req, feeds, record)
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
            if self.storage_fault is not None:  # nothing to journal a start, an expiry or a rejection in
                continue
            step = plan_wake(
                self.clock(),
                list(self._queue.values()),
                [r.job for r in self._running.values()],
                self.throttle,
                may_start=not self._stopping,
                governor=self.governor,
                rate=self.mission.rate,
            )
            for job, reason in step.expire:
                self._queue.pop(job.job_id, None)
                self._background(self._finish(job.job_id, JobState.EXPIRED, reason, job), f"expiry of {job.job_id}")
            for job, reason in step.reject:
                self._queue.pop(job.job_id, None)
                self._background(self._finish(job.job_id, JobState.REJECTED, reason, job),
                                 f"rejection of {job.job_id}")
            floor = self._floor()
            for job in step.start:
                del self._queue[job.job_id]
                task = self._background(self._run_job(job), f"run of {job.job_id}", name=job.job_id, pending=False)
                running = RunningJob(job.job_id, job.model, job.units, redundancy=strongest(job.redundancy, floor))
                self._running[job.job_id] = RunningTask(running, task)

    async def _finish(self, job_id: str, state: JobState, reason: str | None, job: QueuedJob | None) -> bool:
        """Move a queued or running job to a terminal state other than done. When the journal
        refuses the write the job (``job``, its queue entry) goes back to the queue, to be ended
        once the journal takes writes again, and False is returned."""
        self._queue.pop(job_id, None)
        request = self._requests.pop(job_id, None)
        self._decoded.pop(job_id, None)
        now = self.clock()
        try:
            record = await self.writer.submit(lambda j: j.set_state(job_id, state, now, reason))
        except JournalFault as exc:
            self._keep_queued(job, request, f"not {state.value} ({reason}): {exc.reason}")
            return False
        log.info("job %s %s: %s", job_id, state, reason)
        self._publish_state(record)
        self._result_write_failures.pop(job_id, None)
        return True

    def _keep_queued(self, job: QueuedJob | None, request: bytes | None, why: str,
                     record: JobRecord | None = None) -> None:
        """A job whose new state the journal refused stays queued in memory (its journal row still
        says ``queued`` or ``running``; both run again after a restart): an ``error`` event and a
        log line say so, and a ``queued`` state event when its last one said otherwise."""
        if job is None:
            return
        self._queue[job.job_id] = job
        if request is not None:
            self._requests[job.job_id] = request
        text = f"job {job.job_id} stays queued, journal write failed: {why}"
        log.error("%s", text)
        self._event(EventKind.ERROR, text, severity="error", job_id=job.job_id)
        if record is not None and record.state is not JobState.QUEUED:
            self._publish_state(replace(record, state=JobState.QUEUED, updated_utc=self.clock(), reason=why))

    async def _requeue(self, job: QueuedJob, reason: str, record: JobRecord | None) -> None:
        now = self.clock()
        job_id = job.job_id
        try:
            record = await self.writer.submit(lambda j: j.set_state(job_id, JobState.QUEUED, now, reason))
        except JournalFault as exc:
            self._keep_queued(job, None, f"requeue ({reason}): {exc.reason}", record)
            return
        self._queue[job_id] = job
        log.info("job %s requeued: %s", job_id, reason)
        self._publish_state(record)

    def _queued(self, r: JobRecord) -> QueuedJob:
        """A journaled job back on the queue, with the redundancy it asks for (its request's, else its
        model's and priority's default)."""
        asked: Redundancy | None = None
        with contextlib.suppress(KeyError, StoredCorruption, ValueError):
            header = peek_header(self._requests.get(r.job_id) or self.journal.request(r.job_id)) or {}
            value = header.get("redundancy")
            asked = Redundancy(value) if isinstance(value, str) else None
        mode = asked or self.settings.radiation.default_redundancy(r.model, r.priority)
        return QueuedJob(r.job_id, r.priority, r.model, r.received_utc, r.deadline_utc, redundancy=mode)

    def _floor(self) -> Redundancy:
        """The governor's high-flux redundancy floor (none without a governor)."""
        last = self.governor.last if self.governor is not None else None
        return last.redundancy if last is not None else Redundancy.NONE

    def _result(self, job_id: str, entry: RegisteredModel, outcome: RunOutcome, mode: Redundancy, attempt: int,
                request_payload: bytes, recomputed: str | None = None, energy_j: float | None = None,
                energy_source: EnergySource | None = None) -> tuple[bytes, float]:
        """The encoded result of a run (saying how it was checked, and its energy in J where known) and
        its finish time."""
        finished = self.clock()
        tensors, binary = pack_tensors(outcome.outputs, framed=request_payload[: len(MAGIC)] == MAGIC)
        result = JobResult(
            job_id=job_id,
            model=entry.manifest.name,
            version=entry.manifest.version,
            outputs=tensors,
            started_utc=finished - outcome.run_s,
            finished_utc=finished,
            run_ms=outcome.run_s * 1e3,
            provider=outcome.provider,
            attempt=attempt,
            redundancy=mode,
            check=outcome.verdict.status,  # "unresolved" raised RunsDisagree: never here
            runs=outcome.verdict.runs,
            weights_scrubbed=self.soft_errors.scrubbed(entry, outcome.provider),
            recomputed=recomputed,
            energy_j=energy_j,
            energy_source=energy_source,
        )
        return encode(result, binary), finished

    async def _checked_run(self, job_id: str, entry: RegisteredModel, feeds: dict[str, Any], threads: int,
                           mode: Redundancy) -> RunOutcome:
        """Run a job's inference under ``mode`` (with the TEST-ONLY fault hooks, and their accounting)."""
        soft = self.soft_errors
        hooks = soft.hooks(job_id, entry.manifest.name)
        try:
            outcome = await self.executor.run(job_id, soft.sessions(entry, threads), feeds, threads, mode, hooks)
        except RunsDisagree as exc:
            soft.disagreed(job_id, entry, mode, exc.verdict)
            if soft.injector is not None:
                soft.injector.settle(job_id, None, [], None)
            raise
        soft.account(job_id, entry, mode, outcome, threads)
        injector = soft.injector
        if injector is not None and injector.pending(job_id):  # TEST-ONLY: what did the injected fault do?
            reference = None
            if outcome.verdict.status == "single":
                clean = await self.executor.run(f"{job_id}-reference", soft.sessions(entry, threads), feeds, threads)
                reference = clean.outputs
            injector.settle(job_id, outcome.verdict, outcome.runs, reference)
        return outcome

    def _result_not_journaled(self, job: QueuedJob, request: bytes, record: JobRecord, fault: JournalFault) -> None:
        """The journal refused a result: the job runs again once it takes writes (the result was never
        published, so the ground sees one result), or fails after :data:`RESULT_WRITE_ATTEMPTS` runs."""
        failures = self._result_write_failures.get(job.job_id, 0) + 1
        self._result_write_failures[job.job_id] = failures
        if failures >= RESULT_WRITE_ATTEMPTS:
            reason = f"result not journaled in {failures} runs: {fault.reason}"
            self._background(self._finish(job.job_id, JobState.FAILED, reason, job), f"failure of {job.job_id}")
            return
        self._keep_queued(job, request, f"result not journaled ({fault.reason}); runs again once the journal "
                          "takes writes", record)

    async def _run_job(self, job: QueuedJob) -> None:
        job_id = job.job_id
        threads = self.throttle.intra_op_threads
        metered = False  # the board's energy meter counts this job as running
        record: JobRecord | None = None
        payload: bytes | None = None
        try:
            # The running mark is not waited for (it need not be durable, see JobJournal.set_state):
            # the writer applies it before this job's completion, which is queued after it.
            if job_id in self._cancel_before_run:  # cancelled between the dispatcher's start and now
                raise RunTerminated(job_id, "cancel")
            now = self.clock()
            held = self._decoded.pop(job_id, None)  # decoded and journaled at intake, not run since
            # else read before the running mark: the writer may apply it at once
            queued = held[2] if held is not None else self.journal.get(job_id)
            if queued is None:
                raise KeyError(f"job {job_id} is not in the journal")
            mark = self.writer.submit(lambda j: j.set_state(job_id, JobState.RUNNING, now), durable=False)
            mark.add_done_callback(_read_quietly)  # a fault there fails the completion too, which handles it
            record = replace(queued, state=JobState.RUNNING, updated_utc=now, reason=None, attempt=queued.attempt + 1)
            self._publish_state(record)
            payload = self._requests.pop(job_id, None) or self.journal.request(job_id)
            if held is None:
                decoded = decode(payload, JobRequest)
                req, feeds = decoded.message, unpack_tensors(decoded.message.inputs, decoded.binary)
            else:
                req, feeds = held[0], held[1]
            entry = self.registry.resolve(req.model, record.version)
            mode = self.soft_errors.mode(req, record.priority, self._floor())
            if self.board is not None:
                self.board.job_started(job_id, len(self._running))
                metered = True
            outcome = await self._checked_run(job_id, entry, feeds, threads, mode)
            energy_j = await self.board.job_finished(job_id, len(self._running)) if metered and self.board else None
            metered = False
        except RunTerminated as exc:
            if exc.reason == "cancel":
                await self._finish(job_id, JobState.CANCELLED, "cancelled by ground command while running", job)
            else:
                await self._requeue(job, f"preempted ({exc.reason})", record)
        except JournalFault as exc:  # the request could not be read
            self._on_journal_fault(exc)
            self._keep_queued(job, payload, f"request not read: {exc.reason}", record)
        except StoredCorruption as exc:
            self.soft_errors.ledger.stored_corrupt += 1
            self._event(EventKind.SOFT_ERROR, str(exc), severity="error", job_id=job_id, stored="request")
            await self._finish(job_id, JobState.FAILED, f"{exc}: the input is lost, the job cannot run", job)
        except RunsDisagree as exc:
            await self._finish(job_id, JobState.FAILED, f"{exc}: no result is trusted (soft error)", job)
        except (ModelError, WireError, KeyError) as exc:
            await self._finish(job_id, JobState.FAILED, str(exc), job)
        except Exception as exc:
            log.exception("job %s failed", job_id)
            await self._finish(job_id, JobState.FAILED, f"inference error: {exc}", job)
        else:
            source: EnergySource | None = "measured" if energy_j is not None else None
            if energy_j is None and self.governor is not None:  # no power sensor: the board profile's estimate
                energy_j, source = outcome.run_s * threads * self.governor.config.board.w_per_core, "estimated"
            result_payload, finished = self._result(job_id, entry, outcome, mode, record.attempt, payload,
                                                    energy_j=energy_j, energy_source=source)
            try:
                done = await self.writer.submit(lambda j: j.complete(job_id, result_payload, finished))
            except JournalFault as exc:
                self._result_not_journaled(job, payload, record, exc)
                return
            self._result_write_failures.pop(job_id, None)
            self.jobs_done += 1
            self.metrics.inference(entry.manifest.name, outcome.run_s)
            if self.governor is not None:  # one inference's cost (the governor multiplies by the mode's runs):
                runs = outcome.verdict.runs  # measured energy where the board has a sensor, else the estimate
                self.governor.record_run(entry.manifest.name, outcome.run_s / runs, threads,
                                         energy_j=energy_j / runs if energy_j is not None and source == "measured"
                                         else None, at_s=time.monotonic())
            # State before result: once the ground holds the result, the retained state already says done.
            self._publish_state(done)
            self._publish_job(job_id, self.topics.result(job_id), result_payload)
        finally:
            if metered and self.board is not None:
                self.board.job_ended(job_id)
            self._running.pop(job_id, None)
            self._cancel_before_run.discard(job_id)
            self._wake.set()

    # ================================================================= results computed again

    def _stored_result(self, job_id: str) -> bytes | None:
        """The journal's result of ``job_id``; one that fails its checksum is never returned: it is
        counted, reported and computed again (:meth:`_recompute`), and None returned meanwhile."""
        try:
            return self.journal.result(job_id)
        except StoredCorruption as exc:
            self.soft_errors.ledger.stored_corrupt += 1
            self._event(EventKind.SOFT_ERROR, str(exc), severity="warning", job_id=job_id, stored="result")
            self._recompute_soon([job_id], "its stored result failed its checksum")
            return None

    def _recompute_soon(self, job_ids: list[str], reason: str) -> None:
        """Compute ``job_ids`` again (:meth:`_recompute`); those whose result the ground acknowledged, and
        whose input is therefore gone, are flagged in one event instead (all of them when the journal
        cannot be read: a storage fault pauses intake meanwhile)."""
        try:
            onboard = set(self.journal.unacked_results())
            why_not = "their results were acknowledged and their inputs are no longer onboard"
        except JournalFault as exc:
            self._on_journal_fault(exc)
            onboard, why_not = set(), f"the journal cannot be read ({exc.reason})"
        flagged = [job_id for job_id in job_ids if job_id not in onboard]
        if flagged:
            self._event(EventKind.SOFT_ERROR, f"{len(flagged)} job(s): {reason}; {why_not}: flagged, not re-run",
                        severity="warning", flagged=len(flagged), jobs=flagged[:100])
        for job_id in job_ids:
            if job_id in onboard and job_id not in self._recomputing:
                self._recomputing.add(job_id)
                self._background(self._recompute(job_id, reason), f"recompute of {job_id}")

    async def _recompute(self, job_id: str, reason: str) -> None:
        """Compute a finished job again because ``reason``; store and republish the result when it
        differs from the stored one (or that one is corrupt). A job whose input is no longer onboard (its
        result acknowledged) is flagged in an event; one whose stored result is corrupt and cannot be
        computed again fails (its retained result cleared), so no wrong result is ever republished."""
        try:
            record = self.journal.get(job_id)
            if record is None or record.state is not JobState.DONE:
                return
            try:
                old: bytes | None = self.journal.result(job_id)
            except StoredCorruption:
                old = None
            try:
                payload = self.journal.request(job_id)
            except KeyError:
                self._event(EventKind.SOFT_ERROR, f"job {job_id}: {reason}; its result was acknowledged and its "
                            "input is no longer onboard: flagged, not re-run", severity="warning", job_id=job_id,
                            flagged=1)
                return
            except StoredCorruption as exc:
                self.soft_errors.ledger.stored_corrupt += 1
                if old is None:
                    await self._fail_done(job_id, f"stored result corrupted and not computed again: {exc}")
                else:
                    self._event(EventKind.SOFT_ERROR, f"job {job_id}: {reason}; cannot re-run it ({exc}): flagged",
                                severity="warning", job_id=job_id, flagged=1)
                return
            try:
                decoded = decode(payload, JobRequest)
                entry = self.registry.resolve(decoded.message.model, record.version)
                mode = self.soft_errors.mode(decoded.message, record.priority, self._floor())
                threads = self.throttle.intra_op_threads
                feeds = unpack_tensors(decoded.message.inputs, decoded.binary)
                outcome = await self._checked_run(job_id, entry, feeds, threads, mode)
            except (ModelError, WireError, RunsDisagree, RunTerminated) as exc:
                if old is None:
                    await self._fail_done(job_id, f"stored result corrupted and not computed again: {exc}")
                else:
                    self._event(EventKind.SOFT_ERROR, f"job {job_id}: {reason}; could not re-run it ({exc}): "
                                "flagged", severity="warning", job_id=job_id, flagged=1)
                return
            await self._replace_result(job_id, entry, record, outcome, mode, payload, old, reason)
        except JournalFault as exc:  # a corrupt stored result is never published meanwhile (_stored_result)
            self._on_journal_fault(exc)
            self._event(EventKind.SOFT_ERROR, f"job {job_id}: {reason}; not computed again, journal fault: "
                        f"{exc.reason}", severity="warning", job_id=job_id, flagged=1)
        finally:
            self._recomputing.discard(job_id)

    async def _replace_result(self, job_id: str, entry: RegisteredModel, record: JobRecord, outcome: RunOutcome,
                              mode: Redundancy, payload: bytes, old: bytes | None, reason: str) -> None:
        previous = None
        if old:
            with contextlib.suppress(WireError):
                stored = decode(old, JobResult)
                previous = unpack_tensors(stored.message.outputs, stored.binary)
        if previous is not None and same(previous, outcome.outputs):
            log.info("job %s computed again (%s): same result", job_id, reason)
            self._event(EventKind.SOFT_ERROR, f"job {job_id}: {reason}; computed again, same result",
                        severity="info", job_id=job_id, changed=False)
            return
        result_payload, finished = self._result(job_id, entry, outcome, mode, record.attempt, payload,
                                                recomputed=reason)
        if not await self.writer.submit(lambda j: j.replace_result(job_id, result_payload, finished)):
            self._event(EventKind.SOFT_ERROR, f"job {job_id}: {reason}; acknowledged meanwhile: flagged",
                        severity="warning", job_id=job_id, flagged=1)
            return
        if previous is not None:
            self.soft_errors.ledger.reruns_changed += 1
        log.warning("job %s computed again (%s): result replaced", job_id, reason)
        self._event(EventKind.SOFT_ERROR, f"job {job_id}: {reason}; computed again, corrected result published",
                    severity="warning", job_id=job_id, changed=True)
        self._publish_job(job_id, self.topics.result(job_id), result_payload)

    async def _fail_done(self, job_id: str, reason: str) -> None:
        """A done job whose result is lost: failed, its retained result cleared."""
        now = self.clock()
        record = await self.writer.submit(lambda j: j.set_state(job_id, JobState.FAILED, now, reason))
        log.error("job %s failed: %s", job_id, reason)
        self._publish_state(record)
        self._publish_soon(self.topics.result(job_id), b"", retain=True)

    def preempt_all(self, reason: str) -> list[str]:
        """Stop every running job at its next graph node; they are requeued, never lost."""
        return [job_id for job_id in list(self._running) if self.executor.terminate(job_id, reason)]

    # ============================================================================ storage faults

    def _on_journal_fault(self, fault: JournalFault | None) -> None:
        """A storage fault (pause intake and starting), found by the writer or by a read, or a probe
        that committed (resume, if paused). The writer calls it on the loop before the futures of the
        failing writes settle."""
        previous = self.storage_fault
        if fault is not None:
            self.storage_fault = fault
            if previous is not None and previous.reason == fault.reason:
                return
            if previous is None:
                self._storage_fault_since = self.clock()
            text = (f"{fault}: intake paused and no job starts until it takes writes again (probed every "
                    f"{self.settings.journal.probe_period_s:g} s)")
            log.error("%s", text)
            self._event(EventKind.ERROR, text, severity="error", journal=str(fault.path), reason=fault.reason)
        else:
            if previous is None:
                return
            try:
                self.journal.reopen()  # the reader, too, may hold a file system that was replaced
            except JournalFault as exc:
                log.error("journal writes again but cannot be opened for reading: %s", exc)
                self.storage_fault = exc
                return
            self.storage_fault = None
            down_s = self.clock() - self._storage_fault_since
            text = f"journal {previous.path} takes writes again after {down_s:.1f} s: intake resumed"
            log.warning("%s", text)
            self._event(EventKind.LIFECYCLE, text, severity="info", journal=str(previous.path), down_s=round(down_s, 3))
            self._wake.set()
        self._heartbeat()

    async def _probe_loop(self) -> None:
        """While the journal is faulted, try a durable write every ``journal.probe_period_s``."""
        settings = self.settings.journal
        while True:
            await asyncio.sleep(settings.probe_period_s)
            if self.storage_fault is not None:
                with contextlib.suppress(JournalFault):  # still faulted: the writer said so already
                    await self.writer.probe(self.clock(), settings.probe_bytes)

    async def _ping_journal(self) -> None:
        """The supervisor's ping: the writer thread answered. A storage fault is an answer too (the
        thread is alive; the fault pauses intake, and restarting flightd would not mend the disk)."""
        with contextlib.suppress(JournalFault):
            await self.writer.submit(lambda j: None, durable=False)

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
        except (WireError, AuthError, CommandError, ModelError, SequenceError, InjectionRefused, JournalFault) as exc:
            if isinstance(exc, JournalFault):
                self._on_journal_fault(exc)
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
                    "control_max_slip_ms": h.max_slip_s * 1e3, "telemetry_samples": self.telemetry_samples}
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
        if isinstance(body, InjectFault):
            return await self._inject(body)
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

    async def _inject(self, body: InjectFault) -> dict[str, Any]:
        """TEST-ONLY fault injection (refused unless flightd was started with it); the reply says what was
        flipped, with flightd's clock (``at_utc``) for latency measurements."""
        if body.target.value.startswith("stored_"):
            what = body.target.value.removeprefix("stored_")
            positions = self.soft_errors.stored_positions(body)
            job_id = str(body.job_id)
            size = await self.writer.submit(lambda j: j.flip_stored_bits(job_id, what, positions))
            if not size:
                raise CommandError(f"job {job_id} has no stored {what} to corrupt")
            return {"target": body.target.value, "job_id": job_id, "bits": len(positions), "blob_bits": size,
                    "at_utc": self.clock()}
        return {**self.soft_errors.inject(body), "at_utc": self.clock()}

    async def _cancel(self, record: JobRecord) -> dict[str, Any]:
        """Cancel a queued job (the reply says ``cancelled`` once the journal holds it: it will never run
        here, so a fleet dispatcher may send it elsewhere), or stop a running one (``cancelling``: it
        ends ``cancelled``, or ``done`` if it finished first). Decided on this event loop's own state:
        the dispatcher takes a job off the queue and creates its run in one step, so a job is either
        still queued here or already on its way to the executor, never neither. Raises CommandError when
        the journal refuses the write (the job stays queued)."""
        job_id = record.job_id
        if job_id in self._queue:
            job = self._queue[job_id]
            if not await self._finish(job_id, JobState.CANCELLED, "cancelled by ground command", job):
                raise CommandError(f"job {job_id} not cancelled: {self.storage_fault or 'journal write failed'}")
            return {"job_id": job_id, "state": JobState.CANCELLED.value}
        if job_id in self._running:
            if not self.executor.terminate(job_id, "cancel"):  # its run has not reached the executor yet
                self._cancel_before_run.add(job_id)
            return {"job_id": job_id, "state": "cancelling"}
        raise CommandError(f"job {job_id} is {record.state.value}: nothing to cancel")

    async def _ack_result(self, record: JobRecord) -> dict[str, Any]:
        now = self.clock()
        if not await self.writer.submit(lambda j: j.ack_result(record.job_id, now)):
            raise CommandError(f"job {record.job_id} has no unacknowledged result")
        self._publish_soon(self.topics.result(record.job_id), b"", retain=True)
        return {"job_id": record.job_id, "acked": True}

    # ============================================================================ telemetry, cycle

    def _on_telemetry(self, payload: bytes, topic: str) -> None:
        """A sample on ``tlm/<channel>``. Refused with one log line (and, on a channel the governor
        watches, fed to it as unreadable: garbage on a hard limit's channel fails it): a payload that
        does not decode, a sample whose ``sat`` or ``channel`` is not the one its topic names, and in
        flight a sample from the future (:meth:`flight.mission_clock.MissionClock.observe`)."""
        channel = self.topics.telemetry_channel_of(topic)
        try:
            sample = decode(payload, Telemetry).message
            if sample.sat != self.topics.sat or sample.channel != channel:
                raise WireError(f"sample of {sample.sat}/{sample.channel} on {topic}: the topic names "
                                f"{self.topics.sat}/{channel}")
            outside = sample.channel == CLOCK or sample.channel in FLIGHTD_CHANNELS  # not the spacecraft's
            if not outside and not self.mission.observe(sample.t_s, time.monotonic()):
                raise WireError(f"t_s {sample.t_s:.1f} s is from the future: mission time is "
                                f"{self.mission.now(time.monotonic()):.1f} s (a second sample must confirm a jump)")
        except WireError as exc:
            log.warning("bad telemetry on %s: %s", topic, exc)
            if channel is not None and channel not in FLIGHTD_CHANNELS:  # garbage fails its limits (flight.governor)
                now_s = self.mission.now(time.monotonic())
                self._new_samples.append(Sample(channel, now_s, unreadable_values(channel)))
            return
        if sample.channel == CLOCK:  # a simulator's time tone: the mission clock only, not the governor
            self.mission.tone(sample.t_s, time.monotonic(), sample.values.get(RATE), sample.values.get(MET_S))
        elif sample.channel not in FLIGHTD_CHANNELS:
            self.metrics.board(power_w=sample.values.get(COMPUTE_W) if sample.channel == POWER else None,
                               temperature_c=sample.values.get(BOARD_C) if sample.channel == THERMAL else None)
            self.telemetry[sample.channel] = sample
            self.telemetry_samples += 1
            self._new_samples.append(sample)
            self.sequences.observe(sample)

    def _status_line(self) -> str:
        """systemd's STATUS= (``systemctl status flightd``)."""
        link = "online" if self._client is not None else "link down"
        intake = "" if self.storage_fault is None else f", INTAKE PAUSED: {self.storage_fault}"
        return (f"{link}, mode {self.throttle.mode.value}, {len(self._queue)} queued, "
                f"{len(self._running)} running, {self.jobs_done} done{intake}")

    def _intake_state(self) -> tuple[Literal["open", "paused", "draining"], str | None]:
        """The status's ``intake`` and ``intake_reason``."""
        if self._stopping:
            return "draining", "flightd is stopping: submissions are journaled and run after the restart"
        if self.storage_fault is not None:
            return "paused", f"{self.storage_fault} (since {self._storage_fault_since:.0f} UTC)"
        return "open", None

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
        if self._said_offline:
            return
        self._publish_soon(self.topics.status, encode(self._online_status()), retain=True)

    def _online_status(self) -> Status:
        t = self.throttle
        h = self.control.health
        intake, intake_reason = self._intake_state()
        return Status(
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
            outlook=self._outlook(),
            intake=intake,
            intake_reason=intake_reason,
            **self._identity(),
            keys=sorted(e.fingerprint for e in self.guard.ring.active),
        )

    def _outlook(self) -> DispatchOutlook:
        """What a fleet dispatcher routes by: the governor's allowance and outlook (copied, not
        recomputed), this queue's committed work and the cost model's estimates (link.messages)."""
        costs = self.governor.costs if self.governor is not None else self._seed_costs
        running = [r.job for r in self._running.values()]
        committed, running_core_s = committed_core_s(self._queue.values(), running, costs)
        models = {m["name"] for m in self.registry.listing() if m["active"]}
        now_m = time.monotonic()
        ages = {name: age for name in sorted(models) if (age := costs.age_s(name, now_m)) is not None}
        fields: dict[str, Any] = {}
        if self.governor is not None:
            o = self.governor.outlook(self.mission.now(time.monotonic()))
            fields = {"orbit_busy_cores": o.orbit_busy_cores, "in_eclipse": o.in_eclipse,
                      "phase_left_s": max(0.0, o.phase_left_s), "thermal_headroom_c": o.thermal_headroom_c,
                      "soc": o.soc}
        return DispatchOutlook(
            busy_cores=self.throttle.busy_cores,
            mission_rate=self.mission.current_rate(),
            committed_core_s=committed,
            running_core_s=running_core_s,
            job_core_s={name: costs.estimate(name).core_s for name in sorted(models)},
            job_cost_age_s=ages,
            **fields,
        )

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
        """One board sample: on ``tlm/board``, to the governor and to the Prometheus metrics."""
        self.metrics.board_probe(sample)
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
        self._pubacks.expire()  # publishes without a PUBACK in 10 s: their jobs are published again (heartbeat)
        self.soft_errors.scrub()
        self._govern()
        if not self._stopping:  # mission time is a timebase once plant telemetry has anchored it
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
            errors = Telemetry(sat=self.settings.sat, channel=SOFT_ERRORS, t_s=self.mission.now(now_m),
                               at_utc=self.clock(), values=self.soft_errors.sample())
            self._publish_soon(self.topics.telemetry(SOFT_ERRORS), encode(errors), qos=0)
            self._resend_unsent()
            try:
                self.metrics.job_counts(self.journal.counts())
            except JournalFault as exc:
                self._on_journal_fault(exc)
            cutoff = self.clock() - self.settings.journal.retention_s
            if self.storage_fault is None:
                self._background(self._purge(cutoff), "journal purge")
        if self._queue:
            self._wake.set()
