"""The onboard sequence service: the I/O shell around the pure :class:`flight.sequencer.Sequencer`.

It stores each uploaded sequence in the journal (``sequences`` table) and arms it; every control
cycle it gives the engine the clocks and the new telemetry, submits each firing's job through
flightd's ordinary intake (so the governor bounds it like any other) and records the firing and
the engine's progress in the journal. On start it re-arms what was armed, so a reset loses no
occurrence and repeats none: a firing is recorded after its job was handed to the journal writer,
and a firing replayed after a crash resubmits the same idempotent job id, which the intake ignores.

Clocks: relative delays, periods and event offsets count on the mission clock's elapsed timebase
(:meth:`flight.mission_clock.MissionClock.elapsed`), which no jump of mission time or UTC moves:

- in flight, CLOCK_MONOTONIC (mission seconds are seconds). It runs on across a flightd restart on the
  same boot (same ``/proc/sys/kernel/random/boot_id``); after a reboot the stored times are moved by
  the UTC time that passed (the best estimate there is);
- under a simulator (time tones), the tone's ``met_s``, the simulator's mission elapsed time: it runs
  on across a flightd restart while the same simulator runs. A flightd that restarts under a
  simulator re-arms what it stored on that timebase at the first tone (a simulator repeats its tone
  while it waits for flightd), or, when none comes within the mission clock's tone timeout, on the
  monotonic clock with the UTC estimate;
- when the timebase changes under armed sequences (a simulator's first tone), their progress moves
  onto the new one as if no time had passed since the previous reading (one control cycle).

Each stored progress says which timebase it counts on (``timebase``: ``monotonic`` or ``tone``).
Mission time and UTC count as a valid timebase once plant telemetry has anchored mission time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flight.journal import JobJournal
from flight.journal_writer import JournalWriter
from flight.metrics import FlightMetrics
from flight.mission_clock import MissionClock
from flight.registry import ModelError, ModelRegistry, check_inputs
from flight.sequencer import Clocks, Firing, SequenceProgress, Sequencer
from link.codec import WireError, describe_validation_error, encode, unpack_tensors
from link.messages import EventKind, JobRequest, Severity, Telemetry
from link.sequence import CancelSequence, GetSequence, ListSequences, Sequence, SequenceAction, UploadSequence

log = logging.getLogger("flightd.sequences")

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

MONOTONIC, TONE = "monotonic", "tone"
"""The elapsed timebases: the board's monotonic clock (flight), a simulator's MET (its time tone)."""


class SequenceError(Exception):
    """A sequence command that cannot be carried out; ``str()`` goes back in the reply."""


def boot_id(path: Path = BOOT_ID) -> str:
    """This boot's id (Linux), or "" where there is none."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


EventFn = Callable[..., None]


def resume_shift(stored: Mapping[str, Any], timebase: str, now_s: float, now_utc: float, boot: str,
                 rate: float) -> tuple[float, str | None]:
    """How far (s) to move a stored progress to resume it now, at ``now_s`` on ``timebase``, and why
    (None: the stored timebase ran on, the shift is 0). ``stored``: the journal's progress document
    (``timebase``, ``boot``, ``mono_s`` and ``utc_s`` of its last save). It ran on where it is the
    same timebase: the monotonic clock of the same boot, or a simulator's MET that has not gone back
    (the same run). Otherwise the UTC time since the save, at ``rate`` (mission s per s), is the
    estimate of the time that passed. Pure."""
    kind = stored.get("timebase", MONOTONIC)
    if kind != timebase:
        broken: str | None = f"stored on the {kind} timebase, now on the {timebase} one"
    elif kind == MONOTONIC:
        broken = None if stored.get("boot") == boot else "the board rebooted"
    else:
        broken = None if now_s >= stored["mono_s"] else "the simulator's MET went back (a new run)"
    if broken is None:
        return 0.0, None
    expected = stored["mono_s"] + (now_utc - stored["utc_s"]) * rate
    return now_s - expected, broken


class SequenceService:
    """``load()`` at start, ``cycle()`` every control cycle, ``execute(body)`` for sequence commands."""

    def __init__(
        self,
        journal: JobJournal,
        writer: JournalWriter,
        registry: ModelRegistry,
        submit: Callable[[bytes], None],
        event: EventFn,
        metrics: FlightMetrics,
        clock: Callable[[], float],
        mission: MissionClock,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal, self.writer, self.registry = journal, writer, registry
        self.submit, self.event, self.metrics, self.clock = submit, event, metrics, clock
        self.mission, self.wall = mission, wall
        self.engine = Sequencer()
        self.boot = boot_id()
        self._saved: dict[str, str] = {}
        self._samples: list[Telemetry] = []
        self._started_wall = wall()
        self._timebase = self._current_timebase()
        self._last_elapsed = mission.elapsed(self._started_wall)
        self._waiting: list[tuple[Sequence, SequenceProgress, dict[str, Any]]] = []

    def _current_timebase(self) -> str:
        return TONE if self.mission.toned else MONOTONIC

    def mono_s(self) -> float:
        """The engine's clock now (s): the elapsed timebase. When it changed since the last reading (a
        simulator's first tone), the armed progress moves onto the new one (module docstring)."""
        elapsed, timebase = self.mission.elapsed(self.wall()), self._current_timebase()
        if timebase != self._timebase:
            if self.engine.armed:
                self.engine.shift(elapsed - self._last_elapsed)
                log.info("sequences now count on the %s timebase: %s moved onto it", timebase,
                         ", ".join(self.engine.armed))
            self._timebase = timebase
        self._last_elapsed = elapsed
        return elapsed

    def _stored(self, progress: SequenceProgress, mono_s: float, now_utc: float) -> str:
        """The journal's progress document: the engine's progress and where it stands on which timebase."""
        return json.dumps({"engine": progress.to_dict(), "boot": self.boot, "timebase": self._timebase,
                           "mono_s": mono_s, "utc_s": now_utc}, sort_keys=True)

    # ------------------------------------------------------------------------------- start

    def load(self) -> None:
        """Re-arm every sequence the journal holds armed, its progress moved onto the current timebase
        (those stored on a simulator's timebase wait for its tone: :meth:`_resume`)."""
        self._started_wall = self.wall()
        for record in self.journal.sequences(["armed"]):
            try:
                sequence = Sequence.model_validate_json(record.document)
                stored = json.loads(record.progress)
                progress = SequenceProgress.from_dict(stored["engine"])
                stored["mono_s"], stored["utc_s"] = float(stored["mono_s"]), float(stored["utc_s"])
            except (ValueError, KeyError, TypeError) as exc:
                log.error("sequence %s not re-armed: %s", record.sequence_id, exc)
                self.event(EventKind.SEQUENCE, f"sequence {record.sequence_id} not re-armed: {exc}",
                           severity="error", sequence_id=record.sequence_id)
                continue
            self._waiting.append((sequence, progress, stored))
        self._resume()
        if self._waiting:
            log.info("%d sequence(s) wait for the simulator's time tone: %s", len(self._waiting),
                     ", ".join(s.sequence_id for s, _, _ in self._waiting))

    def _resume(self) -> None:
        """Arm the loaded sequences whose timebase is known: the same one (the monotonic clock of this
        boot, or a simulator's MET that has not gone back) as stored, or, failing that, the current
        one with the UTC time that passed as the estimate; a simulator's is awaited for the mission
        clock's tone timeout after :meth:`load`."""
        if not self._waiting:
            return
        now, now_utc = self.mono_s(), self.clock()
        waited = self.wall() - self._started_wall
        waiting, resumed = [], []
        for sequence, progress, stored in self._waiting:
            kind = stored.get("timebase", MONOTONIC)
            if kind == TONE and self._timebase != TONE and waited <= self.mission.tone_timeout_s:
                waiting.append((sequence, progress, stored))
                continue
            shift, broken = resume_shift(stored, self._timebase, now, now_utc, self.boot, self.mission.current_rate())
            if broken is not None:
                progress = progress.shifted(shift)
                log.warning("sequence %s: %s; its times moved by %.1f s (the UTC time that passed is the "
                            "estimate)", sequence.sequence_id, broken, shift)
            self.engine.arm(sequence, now, progress)
            self._saved[sequence.sequence_id] = json.dumps(progress.to_dict(), sort_keys=True)
            resumed.append(sequence.sequence_id)
        self._waiting = waiting
        if resumed:
            log.info("re-armed %d sequence(s): %s", len(resumed), ", ".join(resumed))

    # ------------------------------------------------------------------------------- cycle

    def observe(self, sample: Telemetry) -> None:
        """A telemetry sample for the next cycle (plant channels)."""
        self._samples.append(sample)

    def cycle(self, mission_s: float | None) -> None:
        """One engine step: submit what fired, report it, store the progress."""
        samples, self._samples = self._samples, []
        self._resume()
        if not self.engine.armed:
            return
        now_utc = self.clock()
        clocks = Clocks(self.mono_s(), mission_s, now_utc if mission_s is not None else None)
        firings = self.engine.step(clocks, samples)
        by_sequence: dict[str, list[Firing]] = {}
        for f in firings:
            by_sequence.setdefault(f.sequence_id, []).append(self._fire(f, now_utc))
        finished = self.engine.finished()
        for sid in {*self.engine.armed, *finished}:
            progress = finished.get(sid) or self.engine.progress(sid)
            assert progress is not None
            engine_doc = json.dumps(progress.to_dict(), sort_keys=True)
            if engine_doc == self._saved.get(sid) and sid not in by_sequence:
                continue
            self._saved[sid] = engine_doc
            self._save(sid, progress, clocks, now_utc, by_sequence.get(sid, []))
            if sid in finished:
                self._saved.pop(sid, None)
                severity: Severity = "error" if progress.state == "failed" else "info"
                self.event(EventKind.SEQUENCE, f"sequence {sid} {progress.state}"
                           + (f": {progress.reason}" if progress.reason else ""), severity=severity, sequence_id=sid)

    def _fire(self, f: Firing, now_utc: float) -> Firing:
        """Submit a firing's job (or report its skip or failure); the firing as it is to be recorded:
        a job that cannot be built (a bug, never bad input: the schema bounds every field) is an
        error event and recorded as ``fail``, and the sequence goes on."""
        sequence = self._sequence(f.sequence_id)
        entry = next(e for e in sequence.entries if e.name == f.entry)
        details = {"sequence_id": f.sequence_id, "entry": f.entry, "occurrence": f.occurrence, "action": f.action,
                   "late_s": round(f.late_s, 3), "due": f.due, "t_s": f.mission_s}
        what = f"sequence {f.sequence_id} entry {f.entry} #{f.occurrence}"
        if f.action == "run":
            job = entry.job
            try:
                request = JobRequest(job_id=f.job_id, model=job.model, version=job.version, inputs=job.inputs,
                                     priority=job.priority, submitted_utc=now_utc,
                                     deadline_utc=None if job.deadline_s is None else now_utc + job.deadline_s)
            except ValidationError as exc:
                text = f"{what}: job {f.job_id} not submitted: {describe_validation_error(exc)}"
                log.error("%s", text)
                self.event(EventKind.SEQUENCE, text, severity="error", job_id=f.job_id, **{**details, "action": "fail"})
                return replace(f, action="fail")
            self.submit(encode(request))
            self.metrics.sequence_fired(f.sequence_id)
            text = f"{what} fired job {f.job_id}"
            self.event(EventKind.SEQUENCE, text + (f" ({f.late_s:.1f} s late)" if f.late else ""),
                       severity="warning" if f.late else "info", job_id=f.job_id, **details)
        else:
            text = (f"{what} {f.late_s:.1f} s late: "
                    f"{'skipped' if f.action == 'skip' else 'failed'} (policy {entry.late})")
            self.event(EventKind.SEQUENCE, text, severity="error" if f.action == "fail" else "warning", **details)
        log.info("%s", text)
        return f

    def _sequence(self, sequence_id: str) -> Sequence:
        record = self.journal.get_sequence(sequence_id)
        if record is None:
            raise KeyError(sequence_id)
        return Sequence.model_validate_json(record.document)

    def _save(self, sid: str, progress: SequenceProgress, clocks: Clocks, now_utc: float,
              firings: list[Firing]) -> None:
        """Store the progress and the new firings. The write is queued by a task created after the
        firings' intake tasks, so the journal writer applies it after their jobs are journaled."""
        doc = self._stored(progress, clocks.mono_s, now_utc)
        rows = [(f.entry, f.occurrence, f.job_id, f.action, f.late_s, f.mission_s, f.due) for f in firings]
        state, reason = progress.state, progress.reason

        async def write() -> None:
            await self.writer.submit(lambda j: j.save_sequence(sid, state, doc, now_utc, reason, rows))

        task = asyncio.get_running_loop().create_task(write())
        task.add_done_callback(_log_failure)

    # ----------------------------------------------------------------------------- commands

    async def execute(self, body: SequenceAction) -> Any:
        """Carry out a sequence command; :class:`SequenceError` with the reason when it cannot be."""
        if isinstance(body, UploadSequence):
            return await self._upload(body.sequence)
        if isinstance(body, ListSequences):
            return [self._summary(r.sequence_id) for r in self.journal.sequences()]
        record = self.journal.get_sequence(body.sequence_id)
        if record is None:
            raise SequenceError(f"unknown sequence {body.sequence_id!r}")
        if isinstance(body, GetSequence):
            return {**self._summary(body.sequence_id), "sequence": json.loads(record.document),
                    "firings": self.journal.sequence_firings(body.sequence_id)}
        assert isinstance(body, CancelSequence)
        progress = self.engine.disarm(body.sequence_id) or self._unwait(body.sequence_id)
        if progress is None:
            raise SequenceError(f"sequence {body.sequence_id} is {record.state}: nothing to cancel")
        progress.state = "cancelled"
        self._saved.pop(body.sequence_id, None)
        now = self.clock()
        doc = self._stored(progress, self.mono_s(), now)
        await self.writer.submit(lambda j: j.save_sequence(body.sequence_id, "cancelled", doc, now,
                                                           "cancelled by ground command"))
        log.info("sequence %s cancelled by ground command", body.sequence_id)
        self.event(EventKind.SEQUENCE, f"sequence {body.sequence_id} cancelled", sequence_id=body.sequence_id)
        return self._summary(body.sequence_id)

    def _unwait(self, sequence_id: str) -> SequenceProgress | None:
        """Take a loaded sequence that still waits for its timebase off the list; its progress."""
        for item in self._waiting:
            if item[0].sequence_id == sequence_id:
                self._waiting.remove(item)
                return item[1]
        return None

    def check(self, sequence: Sequence) -> None:
        """SequenceError unless every entry's model is onboard and its inputs fit the model."""
        for entry in sequence.entries:
            try:
                model = self.registry.resolve(entry.job.model, entry.job.version)
                check_inputs(model.manifest, unpack_tensors(entry.job.inputs))
            except (ModelError, WireError) as exc:
                raise SequenceError(f"entry {entry.name}: {exc}") from None

    async def _upload(self, sequence: Sequence) -> dict[str, Any]:
        self.check(sequence)
        sid = sequence.sequence_id
        mono, now = self.mono_s(), self.clock()
        progress = SequenceProgress(armed_mono_s=mono)
        doc = self._stored(progress, mono, now)
        inserted = await self.writer.submit(lambda j: j.add_sequence(sid, sequence.model_dump_json(), doc, now))
        if not inserted:
            raise SequenceError(f"sequence {sid} is onboard already (cancel it, or upload under a new id)")
        self.engine.arm(sequence, mono, progress)
        log.info("sequence %s armed: %d entries", sid, len(sequence.entries))
        self.event(EventKind.SEQUENCE, f"sequence {sid} armed ({len(sequence.entries)} entries)", sequence_id=sid)
        return self._summary(sid)

    def _summary(self, sid: str) -> dict[str, Any]:
        record = self.journal.get_sequence(sid)
        assert record is not None
        progress = self.engine.progress(sid)
        state = "armed" if progress is not None else record.state
        fired = {e: p.handled for e, p in progress.entries.items()} if progress is not None else None
        if fired is None:
            fired = {}
            for f in self.journal.sequence_firings(sid):
                fired[f["entry"]] = max(fired.get(f["entry"], 0), int(f["occurrence"]))
        return {"sequence_id": sid, "state": state, "received_utc": record.received_utc,
                "updated_utc": record.updated_utc, "reason": record.reason,
                "entries": len(json.loads(record.document)["entries"]), "handled": fired}


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sequence progress not stored: %s", task.exception())
