"""The sequence trigger engine: pure (data in, firings out; no clock, no MQTT, no disk).

Each control cycle the shell calls :meth:`Sequencer.step` with :class:`Clocks` (elapsed time, s;
mission time and UTC when a timebase anchors them, else None) and the
telemetry samples that arrived since the last call; it gets back the :class:`Firing` s that fell
due, in order. What the engine remembers between calls is :class:`SequenceProgress`, plain data
that the shell stores (the journal) and hands back after a reset, so that no occurrence is lost or
repeated: an occurrence counts as handled the moment it is returned.

Trigger semantics are those of :mod:`link.sequence`. Details:

- The elapsed timebase (``Clocks.mono_s``) drives relative delays, periods and event offsets: time
  that passes, which no jump of mission time or UTC moves (the shell reads it from
  :meth:`flight.mission_clock.MissionClock.elapsed`: the monotonic clock in flight, a simulator's
  mission elapsed time under one). The shell keeps it continuous across its own restarts and a
  change of timebase (:meth:`SequenceProgress.shifted`, :meth:`Sequencer.shift`).
- Absolute and orbit triggers, and ``every orbits``, wait for a valid timebase: ``mission_s`` (and
  ``utc_s`` for a UTC time) not None. An orbit event seen in telemetry before that is not acted on.
- Events are edges of a flag between two samples of the trigger's channel (arrival order), so the
  first sample after a start or a reset only sets the flag: an event during a reset is not seen.
- An occurrence handled more than ``late_after_s`` after it fell due is late and follows the
  entry's policy: ``run`` (fire it, marked late), ``skip``, ``fail`` (and the sequence fails). Of
  several occurrences of a periodic entry missed at once, only the latest may run; the others skip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from link.messages import Telemetry
from link.sequence import (
    ORBIT_EVENTS,
    After,
    AtTime,
    Every,
    OrbitEvent,
    Sequence,
    SequenceEntry,
    SequenceState,
    job_id_for,
)
from link.telemetry import ORBIT, PERIOD_S

Action = Literal["run", "skip", "fail"]

CONTACT = "contact"
"""The acquisition-of-signal flag (1 in contact with a ground station) that ``aos``/``los`` watch."""
LAT_DEG = "lat_deg"
LON_DEG = "lon_deg"
"""Sub-satellite latitude and longitude, deg, that region events watch."""


@dataclass(frozen=True)
class Clocks:
    """``mono_s``: the elapsed timebase, s (never jumps). ``mission_s`` / ``utc_s``: None without a
    valid timebase."""

    mono_s: float
    mission_s: float | None = None
    utc_s: float | None = None


@dataclass(frozen=True)
class Firing:
    """One occurrence handled. ``action`` ``run``: submit ``job_id``; ``skip``/``fail``: do not.
    ``late_s``: how long after its due time it was handled (s, mission seconds)."""

    sequence_id: str
    entry: str
    occurrence: int
    job_id: str
    action: Action
    late: bool
    late_s: float
    due: str
    mono_s: float
    mission_s: float | None


@dataclass
class EntryProgress:
    """What the engine knows of one entry (all times on the elapsed timebase, s)."""

    handled: int = 0
    first_mono_s: float | None = None
    last_mono_s: float | None = None
    pending_mono_s: list[float] = field(default_factory=list)
    flag: bool | None = None
    next_due_mono_s: float | None = None
    orbit_period_s: float | None = None
    done: bool = False


@dataclass
class SequenceProgress:
    """A sequence's state between steps; JSON-able via :meth:`to_dict` / :meth:`from_dict`."""

    armed_mono_s: float
    state: SequenceState = "armed"
    reason: str | None = None
    entries: dict[str, EntryProgress] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SequenceProgress:
        entries = {name: EntryProgress(**e) for name, e in dict(doc.get("entries", {})).items()}
        return cls(armed_mono_s=float(doc["armed_mono_s"]), state=doc.get("state", "armed"),
                   reason=doc.get("reason"), entries=entries)

    def shifted(self, delta_s: float) -> SequenceProgress:
        """The same progress with every elapsed time moved by ``delta_s`` (onto another timebase: after
        a reboot the monotonic clock restarted, and the shell estimates the offset from UTC)."""
        def move(v: float | None) -> float | None:
            return None if v is None else v + delta_s

        entries = {
            name: replace(e, first_mono_s=move(e.first_mono_s), last_mono_s=move(e.last_mono_s),
                          pending_mono_s=[p + delta_s for p in e.pending_mono_s],
                          next_due_mono_s=move(e.next_due_mono_s))
            for name, e in self.entries.items()
        }
        return replace(self, armed_mono_s=self.armed_mono_s + delta_s, entries=entries)


def _flag(trigger: OrbitEvent, values: Mapping[str, float]) -> bool | None:
    watched, _ = ORBIT_EVENTS[trigger.event]
    if watched == "region":
        assert trigger.region is not None
        if LAT_DEG not in values or LON_DEG not in values:
            return None
        return trigger.region.contains(values[LAT_DEG], values[LON_DEG])
    value = values.get(watched)
    return None if value is None else value >= 0.5


class Sequencer:
    """The armed sequences and their progress; :meth:`step` once per control cycle."""

    def __init__(self) -> None:
        self._sequences: dict[str, tuple[Sequence, SequenceProgress]] = {}
        self._finished: dict[str, SequenceProgress] = {}

    # ------------------------------------------------------------------------------ arming

    def arm(
        self, sequence: Sequence, now_mono_s: float, progress: SequenceProgress | None = None
    ) -> SequenceProgress:
        """Arm ``sequence`` now (or resume it from ``progress``); ValueError if its id is armed already."""
        if sequence.sequence_id in self._sequences:
            raise ValueError(f"sequence {sequence.sequence_id} is armed already")
        p = progress or SequenceProgress(armed_mono_s=now_mono_s)
        for entry in sequence.entries:
            p.entries.setdefault(entry.name, EntryProgress())
        self._sequences[sequence.sequence_id] = (sequence, p)
        return p

    def disarm(self, sequence_id: str) -> SequenceProgress | None:
        """Forget the sequence (cancelled); its progress, or None if it was not armed."""
        item = self._sequences.pop(sequence_id, None)
        return None if item is None else item[1]

    def shift(self, delta_s: float) -> None:
        """Move every armed sequence's progress by ``delta_s`` (the shell's timebase changed under it:
        :meth:`SequenceProgress.shifted`); the remaining delays are unchanged."""
        self._sequences = {sid: (sequence, progress.shifted(delta_s))
                           for sid, (sequence, progress) in self._sequences.items()}

    def progress(self, sequence_id: str) -> SequenceProgress | None:
        item = self._sequences.get(sequence_id)
        return None if item is None else item[1]

    @property
    def armed(self) -> list[str]:
        return list(self._sequences)

    # -------------------------------------------------------------------------------- step

    def step(self, clocks: Clocks, samples: Iterable[Telemetry] = ()) -> list[Firing]:
        """Everything that fell due by ``clocks``, given the ``samples`` that arrived since the last
        step. Sequences that end (done or failed) are disarmed; their final progress is in
        :meth:`finished`'s answer of this step."""
        batch = list(samples)
        out: list[Firing] = []
        self._finished = {}
        for sid in list(self._sequences):
            sequence, progress = self._sequences[sid]
            for index, entry in enumerate(sequence.entries):
                if progress.state != "armed":
                    break
                ep = progress.entries[entry.name]
                if ep.done:
                    continue
                previous = progress.entries[sequence.entries[index - 1].name] if index else None
                self._entry(sequence, progress, entry, ep, previous, clocks, batch, out)
            if progress.state == "armed" and all(e.done for e in progress.entries.values()):
                progress.state = "done"
            if progress.state != "armed":
                self._finished[sid] = progress
                del self._sequences[sid]
        return out

    def finished(self) -> dict[str, SequenceProgress]:
        """Sequences that ended in the last :meth:`step` (done or failed), with their progress."""
        return dict(self._finished)

    def _entry(self, sequence: Sequence, progress: SequenceProgress, entry: SequenceEntry, ep: EntryProgress,
               previous: EntryProgress | None, clocks: Clocks, samples: list[Telemetry], out: list[Firing]) -> None:
        trigger = entry.trigger
        emit = _Emitter(sequence, progress, entry, ep, clocks, out)
        if isinstance(trigger, AtTime):
            if trigger.mission_s is not None:
                now, due, text = clocks.mission_s, trigger.mission_s, f"mission time {trigger.mission_s:g} s"
            else:
                assert trigger.utc is not None
                now, due, text = clocks.utc_s, trigger.utc.timestamp(), f"UTC {trigger.utc.isoformat()}"
            if clocks.mission_s is not None and now is not None and now >= due:
                emit(now - due, text)
                ep.done = True
        elif isinstance(trigger, After):
            anchor = progress.armed_mono_s if trigger.of == "start" or previous is None else previous.first_mono_s
            if anchor is not None and clocks.mono_s >= anchor + trigger.delay_s:
                emit(clocks.mono_s - (anchor + trigger.delay_s), f"{trigger.delay_s:g} s after {trigger.of}")
                ep.done = True
        elif isinstance(trigger, OrbitEvent):
            self._watch(trigger, ep, clocks, samples)
            while ep.pending_mono_s and clocks.mono_s >= ep.pending_mono_s[0] and progress.state == "armed":
                due = ep.pending_mono_s.pop(0)
                emit(clocks.mono_s - due, trigger.event + (f" + {trigger.offset_s:g} s" if trigger.offset_s else ""))
            ep.done = trigger.count is not None and ep.handled >= trigger.count
        else:
            self._every(trigger, ep, progress, clocks, samples, emit)

    @staticmethod
    def _watch(trigger: OrbitEvent, ep: EntryProgress, clocks: Clocks, samples: list[Telemetry]) -> None:
        _, edge = ORBIT_EVENTS[trigger.event]
        for s in samples:
            if s.channel != trigger.channel:
                continue
            flag = _flag(trigger, s.values)
            if flag is None:
                continue
            before, ep.flag = ep.flag, flag
            if before is None or before == flag or (edge == "rise") != flag or clocks.mission_s is None:
                continue
            if trigger.count is None or ep.handled + len(ep.pending_mono_s) < trigger.count:
                ep.pending_mono_s.append(clocks.mono_s + trigger.offset_s)

    @staticmethod
    def _every(trigger: Every, ep: EntryProgress, progress: SequenceProgress, clocks: Clocks,
               samples: list[Telemetry], emit: _Emitter) -> None:
        if trigger.orbits is not None:
            for s in samples:
                if s.channel == ORBIT and s.values.get(PERIOD_S, 0.0) > 0:
                    ep.orbit_period_s = s.values[PERIOD_S]
            if clocks.mission_s is None or ep.orbit_period_s is None:
                return
            period = trigger.orbits * ep.orbit_period_s
        else:
            assert trigger.period_s is not None
            period = trigger.period_s
        if ep.next_due_mono_s is None:
            ep.next_due_mono_s = progress.armed_mono_s + trigger.first_after_s
        due_now: list[float] = []
        while clocks.mono_s >= ep.next_due_mono_s and (
            trigger.count is None or ep.handled + len(due_now) < trigger.count
        ):
            due_now.append(ep.next_due_mono_s)
            ep.next_due_mono_s += period
        what = f"every {trigger.orbits} orbit(s)" if trigger.orbits else f"every {period:g} s"
        for i, due in enumerate(due_now):
            emit(clocks.mono_s - due, what, may_run=i == len(due_now) - 1)
            if progress.state != "armed":
                break
        ep.done = trigger.count is not None and ep.handled >= trigger.count


@dataclass
class _Emitter:
    """Hands out one entry's next occurrence with its late policy applied."""

    sequence: Sequence
    progress: SequenceProgress
    entry: SequenceEntry
    ep: EntryProgress
    clocks: Clocks
    out: list[Firing]

    def __call__(self, late_s: float, due: str, may_run: bool = True) -> None:
        ep, entry = self.ep, self.entry
        ep.handled += 1
        late = late_s > entry.late_after_s
        action: Action = entry.late if late else "run"
        if action == "run" and not may_run:
            action = "skip"
        ep.last_mono_s = self.clocks.mono_s
        if ep.first_mono_s is None:
            ep.first_mono_s = self.clocks.mono_s
        sid = self.sequence.sequence_id
        self.out.append(Firing(sid, entry.name, ep.handled, job_id_for(sid, entry.name, ep.handled), action, late,
                               max(0.0, late_s), due, self.clocks.mono_s, self.clocks.mission_s))
        if action == "fail":
            self.progress.state = "failed"
            self.progress.reason = f"entry {entry.name} occurrence {ep.handled} was {late_s:.1f} s late (policy fail)"
