"""flightd's supervision: the health table judged on a tick, and systemd told the outcome.

Every tick the :class:`Supervisor` wakes or pings the tasks that answer pings (F Prime's Health
pings its components the same way), evaluates the :class:`~flight.health.HealthTable`, and:

- sends ``WATCHDOG=1`` only if every task checked in within its period. A hung task therefore
  stops the keep-alives within its own period plus one tick, and systemd, one ``WatchdogSec``
  later, kills and restarts flightd (``Restart=on-failure``);
- logs a task going late (warning), fatal (error) and recovering, and hands the change to
  ``on_change`` (flightd publishes it as an event);
- sends ``STATUS=`` when the status text changes (the late tasks are appended to it).

``READY=1`` is sent by :meth:`mark_ready`, which flightd calls once its journal is open and the
broker connected. The tick is at most 1 s, half the period of each pinged task and half the watchdog
period (sd_watchdog_enabled(3) recommends keep-alives at half the period).

Each long-running task runs under :func:`restart_on_failure`: a task that raises is logged with its
traceback, reported and started again after a backoff; one that fails too often in a window stops
flightd (systemd then starts a fresh process, which recovers from the journal), so a task never dies
unseen while the others go on without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from flight.health import HealthEntry, HealthReport, HealthTable, TaskState
from flight.sd_notify import SystemdNotifier
from flight.settings import FlightSettings

log = logging.getLogger("flightd.supervisor")

MAX_TICK_S = 1.0
CONTROL_FLOOR_S = 1.0
RESTARTS = 3
"""Failures of one task within :data:`RESTART_WINDOW_S` that are restarted; one more stops flightd."""
RESTART_WINDOW_S = 60.0
RESTART_BACKOFF_S = 0.5
"""The first restart's delay (s); each failure within the window doubles it."""


async def restart_on_failure(
    name: str,
    run: Callable[[], Coroutine[Any, Any, None]],
    on_failure: Callable[[str, BaseException, float | None], None],
    restarts: int = RESTARTS,
    window_s: float = RESTART_WINDOW_S,
    backoff_s: float = RESTART_BACKOFF_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Await ``run()``; when it raises, call ``on_failure(name, exc, delay_s)`` and run it again after
    ``delay_s`` (``backoff_s`` doubled per earlier failure within ``window_s``). The failure beyond
    ``restarts`` within ``window_s`` calls ``on_failure(name, exc, None)`` and returns: the caller
    stops. A ``run()`` that returns is done (the link yields to a rival flightd that way);
    cancellation passes through."""
    failures: deque[float] = deque()
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            now = clock()
            failures.append(now)
            while failures and now - failures[0] > window_s:
                failures.popleft()
            if len(failures) > restarts:
                on_failure(name, exc, None)
                return
            delay = backoff_s * 2 ** (len(failures) - 1)
            on_failure(name, exc, delay)
            await asyncio.sleep(delay)


def flightd_health(settings: FlightSettings) -> HealthTable:
    """flightd's table: the link, the dispatcher, the control cycle and the journal writer."""
    s = settings.supervision
    table = HealthTable()
    table.register("link", s.link_period_s)
    table.register("dispatcher", s.dispatcher_period_s)
    # A floor of 1 s: a cycle of tens of ms (hil sil runs 50 ms) would otherwise be judged on jitter.
    table.register("control", max(s.control_periods * settings.control_period_s, CONTROL_FLOOR_S))
    table.register("journal", s.journal_period_s)
    return table


class Supervisor:
    """Strokes systemd's watchdog while every task in ``health`` is OK; READY/STATUS/STOPPING."""

    def __init__(
        self,
        health: HealthTable,
        notifier: SystemdNotifier,
        status: Callable[[], str],
        on_change: Callable[[HealthEntry, HealthReport], None] | None = None,
    ) -> None:
        self.health = health
        self.notifier = notifier
        self._status = status
        self._on_change = on_change
        self._wakes: dict[str, Callable[[], None]] = {}
        self._pings: dict[str, Callable[[], Awaitable[Any]]] = {}
        self._outstanding: dict[str, asyncio.Task[Any]] = {}
        self._ready = False
        self._stroking = True
        self._last_status: str | None = None
        self.strokes = 0
        self.last_report: HealthReport | None = None

    def wake_each_tick(self, name: str, wake: Callable[[], None]) -> None:
        """Call ``wake`` every tick; the task checks ``name`` in itself when it runs."""
        self._wakes[name] = wake

    def ping_each_tick(self, name: str, ping: Callable[[], Awaitable[Any]]) -> None:
        """Send ``ping`` every tick (one outstanding at most); its completion checks ``name`` in."""
        self._pings[name] = ping

    @property
    def tick_s(self) -> float:
        """At most 1 s, half the watchdog period and half the period of every task that is woken or
        pinged (it answers only when asked). Tasks that check in on their own cadence do not set
        it: for them the tick only bounds how late lateness is noticed."""
        periods = self.health.periods()
        asked = [periods[name] / 2 for name in (*self._wakes, *self._pings)]
        candidates = [MAX_TICK_S, *asked]
        if self.notifier.watchdog_s is not None:
            candidates.append(self.notifier.watchdog_s / 2)
        return min(candidates)

    def mark_ready(self) -> None:
        """Start-up is complete: send ``READY=1`` (once; later calls do nothing)."""
        if self._ready:
            return
        self._ready = True
        text = self._status_text(self.health.evaluate())
        self._last_status = text
        if self.notifier.ready(text):
            log.info("told systemd READY=1 (%s)", text)

    def stopping(self, why: str) -> None:
        self.notifier.stopping(why)

    async def run(self) -> None:
        watchdog = self.notifier.watchdog_s
        if watchdog is not None:
            slow = {name: p for name, p in self.health.periods().items() if p > watchdog}
            if slow:
                log.warning("task periods %s exceed the %.1f s watchdog period: a hang there stops the "
                            "watchdog later than one period", slow, watchdog)
        try:
            while True:
                self.tick()
                await asyncio.sleep(self.tick_s)
        finally:
            for task in self._outstanding.values():
                task.cancel()

    def tick(self) -> HealthReport:
        """One supervision step (``run`` calls it every tick; tests may call it directly)."""
        for wake in self._wakes.values():
            wake()
        for name, ping in self._pings.items():
            if name not in self._outstanding:
                self._outstanding[name] = asyncio.ensure_future(self._await_ping(name, ping))
        report = self.health.evaluate()
        self.last_report = report
        for entry in report.changed:
            self._log_change(entry, report)
            if self._on_change is not None:
                self._on_change(entry, report)
        if report.all_ok:
            if not self._stroking:
                log.warning("every task checked in again: stroking the watchdog again")
            self._stroking = True
            if self.notifier.watchdog_s is not None and self.notifier.watchdog():
                self.strokes += 1
        elif self._stroking:
            self._stroking = False
            log.error("not stroking the watchdog: %s", report.describe_late())
        if self._ready:
            text = self._status_text(report)
            if text != self._last_status:
                self._last_status = text
                self.notifier.status(text)
        return report

    async def _await_ping(self, name: str, ping: Callable[[], Awaitable[Any]]) -> None:
        try:
            await ping()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an answer that is an error is still no check-in
            log.warning("ping of %s failed: %s", name, exc)
        else:
            self.health.check_in(name)
        finally:
            self._outstanding.pop(name, None)

    def _status_text(self, report: HealthReport) -> str:
        text = self._status()
        late = report.describe_late()
        return f"{text}; LATE: {late}" if late else text

    @staticmethod
    def _log_change(entry: HealthEntry, report: HealthReport) -> None:
        age = entry.age_s(report.at_s)
        if entry.state is TaskState.OK:
            log.warning("task %s checked in again (warnings %d, fatals %d)", entry.name, entry.warn_count,
                        entry.fatal_count)
        elif entry.state is TaskState.WARN:
            log.warning("task %s late: no check-in for %.1f s (period %g s)", entry.name, age, entry.period_s)
        else:
            log.error("task %s FATAL: no check-in for %.1f s (fatal after %g s)", entry.name, age, entry.fatal_s)
