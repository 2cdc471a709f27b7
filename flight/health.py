"""A health table in the manner of F Prime's Svc/Health component.

F Prime's Health pings every component on each of its cycles and counts, per entry, how long the
answer is overdue: past a warning threshold it emits a warning, past a fatal threshold a FATAL,
and it strokes the hardware watchdog only while every entry has answered. Here each long-running
task of flightd (link, dispatcher, control cycle, journal writer) *checks in*, either on its own
schedule or in answer to a ping (:class:`flight.supervisor.Supervisor` sends those), and the table
tells whether every task checked in within its period.

Per entry: ``period_s`` (the longest a healthy task goes between check-ins) and ``fatal_s`` (late
by this much is fatal; default three periods). States are judged from the time since the last
check-in (or since registration, for a task that never checked in): OK within the period, WARN
beyond it, FATAL beyond ``fatal_s``. ``warn_count`` and ``fatal_count`` count episodes, not
evaluations: a task that stays late counts once, and again only after it recovered.

Plain data and a clock: no I/O. ``check_in`` may be called from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

FATAL_PERIODS = 3.0


class TaskState(Enum):
    OK = "ok"
    WARN = "warn"
    FATAL = "fatal"


@dataclass(frozen=True)
class HealthEntry:
    """One task's row: its limits, when it last checked in (monotonic s), its state and counts."""

    name: str
    period_s: float
    fatal_s: float
    registered_s: float
    last_check_in_s: float | None = None
    check_ins: int = 0
    state: TaskState = TaskState.OK
    warn_count: int = 0
    fatal_count: int = 0

    def age_s(self, now_s: float) -> float:
        """Seconds since the last check-in (since registration if it never checked in)."""
        return now_s - (self.last_check_in_s if self.last_check_in_s is not None else self.registered_s)


@dataclass(frozen=True)
class HealthReport:
    """The table at one evaluation: every entry, the late ones, and state changes since the last."""

    at_s: float
    entries: tuple[HealthEntry, ...]
    changed: tuple[HealthEntry, ...]

    @property
    def all_ok(self) -> bool:
        """Every task checked in within its period: the watchdog may be stroked."""
        return all(e.state is TaskState.OK for e in self.entries)

    @property
    def late(self) -> tuple[HealthEntry, ...]:
        return tuple(e for e in self.entries if e.state is not TaskState.OK)

    def describe_late(self) -> str:
        """``dispatcher late 4.1 s (period 2 s)``, one per late task; "" when none is late."""
        return ", ".join(
            f"{e.name} {e.state.value} {e.age_s(self.at_s):.1f} s (period {e.period_s:g} s)" for e in self.late
        )


class HealthTable:
    """Tasks register with a period, check in, and :meth:`evaluate` judges them all."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, HealthEntry] = {}

    def register(self, name: str, period_s: float, fatal_s: float | None = None) -> None:
        """Add a task. ``fatal_s`` defaults to three periods. Raises ValueError on a bad limit or a
        name registered twice."""
        fatal = FATAL_PERIODS * period_s if fatal_s is None else fatal_s
        if period_s <= 0 or fatal < period_s:
            raise ValueError(f"{name}: need 0 < period_s <= fatal_s (got {period_s}, {fatal})")
        with self._lock:
            if name in self._entries:
                raise ValueError(f"task {name!r} is registered already")
            self._entries[name] = HealthEntry(name, period_s, fatal, self._clock())

    def check_in(self, name: str) -> None:
        """``name`` is alive now (thread-safe). Raises KeyError for a task never registered."""
        now = self._clock()
        with self._lock:
            e = self._entries[name]
            self._entries[name] = replace(e, last_check_in_s=now, check_ins=e.check_ins + 1)

    def entry(self, name: str) -> HealthEntry:
        with self._lock:
            return self._entries[name]

    def periods(self) -> dict[str, float]:
        with self._lock:
            return {name: e.period_s for name, e in self._entries.items()}

    def evaluate(self) -> HealthReport:
        """Judge every task now; count a warning or a fatal when a task enters that state."""
        now = self._clock()
        changed = []
        with self._lock:
            for name, e in self._entries.items():
                age = e.age_s(now)
                state = TaskState.OK if age <= e.period_s else TaskState.WARN if age <= e.fatal_s else TaskState.FATAL
                if state is e.state:
                    continue
                # OK -> FATAL at once (an evaluation came late) passes through WARN: count both
                warned = state is TaskState.WARN or (state is TaskState.FATAL and e.state is TaskState.OK)
                updated = replace(
                    e,
                    state=state,
                    warn_count=e.warn_count + warned,
                    fatal_count=e.fatal_count + (state is TaskState.FATAL),
                )
                self._entries[name] = updated
                changed.append(updated)
            entries = tuple(self._entries.values())
        return HealthReport(now, entries, tuple(changed))
