"""Runs ONNX Runtime sessions on a thread pool of flightd's own.

Never the event loop's default executor (aiomqtt's connect uses it). Jobs may be handed over ahead
of time (the daemon keeps a small prefetch) so that inference runs back to back without waiting for
the event loop; the executor itself enforces the throttle:

- at most ``limit`` runs at once (the governor's concurrency; 0 holds every run back),
- after each run the worker rests ``run_s * (1 - duty) / duty`` before freeing its slot, so the
  fraction of time spent computing is the duty cycle.

Every run gets a fresh ``RunOptions`` so that :meth:`InferenceExecutor.terminate` stops it between
graph nodes, or before it starts (the flag stays set once raised,
../shared/reference/boards-and-runtime.md); ``session.run`` releases the GIL. Busy core-seconds
(run time x intra-op threads, from the moment a run really starts to the moment ``session.run``
returns or raises) give ``busy_cores``: :meth:`InferenceExecutor.busy_core_seconds` counts them up to
the instant the caller divides by, so that busy cores over a window never exceed the threads granted.

Redundant execution (docs/radiation.md): a job's runs under ``dmr`` or ``tmr`` execute back to back in
one slot, run ``i`` on the session ``sessions(i, used)`` returns (another weight replica), until
:func:`flight.radiation.redundancy.run_checked` has a verdict (runs on weights repaired meanwhile are
made again); runs with no majority raise :class:`RunsDisagree`. ``hooks`` (TEST-ONLY fault injection)
may alter a run's input copy or outputs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from flight.radiation.redundancy import Verdict, run_checked
from link.messages import Redundancy

Arrays = dict[str, np.ndarray[Any, Any]]
SessionFor = Callable[[int, set[int]], tuple[int, ort.InferenceSession, frozenset[int]]]
"""(run number, slots the job's runs read so far) -> (slot, session) the run executes on, and the slots
whose weights were found corrupt and repaired just now (earlier runs on them no longer count)."""


class RunTerminated(RuntimeError):
    """A run stopped by :meth:`InferenceExecutor.terminate`; ``reason`` says who stopped it."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id} terminated: {reason}")
        self.job_id = job_id
        self.reason = reason


class _StoppedBeforeStart(RuntimeError):
    pass


SINGLE = Verdict("single", 0, 1)
"""The verdict of one unchecked run."""


class RunsDisagree(RuntimeError):
    """A checked job whose runs gave no majority answer (``verdict.status == "unresolved"``)."""

    def __init__(self, job_id: str, verdict: Verdict) -> None:
        super().__init__(f"job {job_id}: {verdict.runs} redundant runs and no majority answer among them")
        self.verdict = verdict


class RunHooks(Protocol):
    """TEST-ONLY fault injection around each run: ``before`` may return an altered copy of the feeds,
    ``after`` may alter the outputs (``run``: the job's run number, ``slot``: the replica it read)."""

    def before(self, job_id: str, run: int, slot: int, feeds: Arrays) -> Arrays: ...

    def after(self, job_id: str, run: int, slot: int, outputs: Arrays) -> Arrays: ...


@dataclass(frozen=True)
class RunOutcome:
    """``outputs`` of the winning run; ``run_s`` busy time of all runs (s), ``run_times`` each run's,
    ``slots`` the replica each run read, ``verdict`` how the runs compared."""

    outputs: Arrays
    run_s: float
    provider: str
    verdict: Verdict = SINGLE
    run_times: tuple[float, ...] = ()
    slots: tuple[int, ...] = (0,)
    runs: list[Arrays] = field(default_factory=list, compare=False)


@dataclass
class _Run:
    options: ort.RunOptions
    threads: int
    start: float | None = None
    end: float | None = None


def _one_session(session: ort.InferenceSession) -> SessionFor:
    def sessions(run: int, used: set[int]) -> tuple[int, ort.InferenceSession, frozenset[int]]:
        return 0, session, frozenset()

    return sessions


class InferenceExecutor:
    """``await run(...)`` executes one inference off the event loop; ``terminate(job_id)`` stops it."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="orbitd-infer")
        self._runs: dict[str, _Run] = {}
        self._terminated: dict[str, str] = {}
        self._lock = threading.Lock()
        self._slots = threading.Condition(self._lock)
        self._limit = max_workers
        self._active = 0
        self._duty = 1.0
        self._core_s_done = 0.0
        self._core_s_reported = 0.0

    def set_throttle(self, limit: int, duty_cycle: float) -> None:
        """At most ``limit`` runs at once (0..max_workers); compute for ``duty_cycle`` (0..1] of the time."""
        with self._slots:
            self._limit = max(0, min(limit, self.max_workers))
            self._duty = min(1.0, max(duty_cycle, 1e-3))
            self._slots.notify_all()

    def _run_blocking(self, job_id: str, sessions: SessionFor, feeds: Arrays, mode: Redundancy,
                      hooks: RunHooks | None) -> RunOutcome:
        with self._slots:
            while self._active >= self._limit and job_id not in self._terminated:
                self._slots.wait(0.1)
            run = self._runs[job_id]
            if job_id in self._terminated:
                raise _StoppedBeforeStart(job_id)
            self._active += 1
            run.start = time.monotonic()
            duty = self._duty
        times: list[float] = []
        slots: list[int] = []
        providers: list[str] = []
        chosen: dict[int, tuple[int, ort.InferenceSession]] = {}

        def discard(i: int) -> list[int]:
            slot, session, repaired = sessions(i, set(slots))
            chosen[i] = (slot, session)
            return [k for k, s in enumerate(slots) if s in repaired]

        def one(i: int) -> Arrays:
            slot, session = chosen.pop(i)
            names = [o.name for o in session.get_outputs()]
            given = hooks.before(job_id, i, slot, feeds) if hooks is not None else feeds
            t0 = time.monotonic()
            values = session.run(names, given, run.options)
            times.append(time.monotonic() - t0)
            slots.append(slot)
            providers.append(session.get_providers()[0])
            outputs = dict(zip(names, values, strict=True))
            return hooks.after(job_id, i, slot, outputs) if hooks is not None else outputs

        try:
            try:
                checked = run_checked(mode, one, discard)
            finally:  # a terminated or failed run stops counting when it stops, not when the loop notices
                end = time.monotonic()
                with self._lock:
                    run.end = end
            run_s = end - run.start  # every run and what lies between them: the busy time counted
            if duty < 1.0:
                time.sleep(run_s * (1.0 - duty) / duty)
            if checked.outputs is None:
                raise RunsDisagree(job_id, checked.verdict)
            return RunOutcome(checked.outputs, run_s, providers[0], checked.verdict, tuple(times), tuple(slots),
                              checked.runs)
        finally:
            with self._slots:
                self._active -= 1
                self._slots.notify_all()

    async def run(self, job_id: str, session: ort.InferenceSession | SessionFor, feeds: Arrays, threads: int,
                  mode: Redundancy = Redundancy.NONE, hooks: RunHooks | None = None) -> RunOutcome:
        """Run ``feeds`` once a slot is free, on ``session`` (or, run by run, on the sessions ``session(i,
        used)`` gives) as often as ``mode`` needs; RunTerminated if stopped by :meth:`terminate`,
        RunsDisagree if the runs have no majority."""
        sessions = _one_session(session) if isinstance(session, ort.InferenceSession) else session
        options = ort.RunOptions()
        options.log_severity_level = 3
        run = _Run(options, threads)
        with self._lock:
            self._runs[job_id] = run
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(self._pool, self._run_blocking, job_id, sessions, feeds, mode, hooks)
        except RunsDisagree:
            self._terminated.pop(job_id, None)
            raise
        except Exception as exc:
            reason = self._terminated.pop(job_id, None)
            if reason is not None:
                raise RunTerminated(job_id, reason) from exc
            raise
        finally:
            with self._lock:
                self._runs.pop(job_id, None)
                if run.start is not None:
                    self._core_s_done += ((run.end or time.monotonic()) - run.start) * threads
        self._terminated.pop(job_id, None)
        return outcome

    def terminate(self, job_id: str, reason: str) -> bool:
        """Stop the run of ``job_id`` at its next graph node, or before it starts; False if unknown."""
        with self._slots:
            run = self._runs.get(job_id)
            if run is None:
                return False
            self._terminated[job_id] = reason
            run.options.terminate = True
            self._slots.notify_all()
            return True

    def running(self) -> list[str]:
        """Jobs computing right now (not those waiting for a slot)."""
        with self._lock:
            return [job_id for job_id, run in self._runs.items() if run.start is not None]

    def busy_core_seconds(self, now: float | None = None) -> float:
        """Core-seconds spent running up to ``now`` (``time.monotonic()`` s; default: the time of the
        call), the elapsed part of runs in progress included, each counted from its start to
        min(its end, ``now``). Never decreases from one call to the next.

        Pass the same ``now`` the busy-core window is measured with: reading the clock here, a moment
        after the caller did, counted up to that later moment against the caller's shorter window and
        reported 2.00002 busy cores on a 2-core board (a clamped 82 W against 82.0004 W in the SIL).
        Call it from the event loop (runs finish there), with ``now`` read just before."""
        with self._lock:
            at = time.monotonic() if now is None else now
            total = self._core_s_done + sum(
                max(0.0, min(run.end if run.end is not None else at, at) - run.start) * run.threads
                for run in self._runs.values()
                if run.start is not None
            )
            self._core_s_reported = max(self._core_s_reported, total)
            return self._core_s_reported

    def shutdown(self) -> None:
        with self._slots:
            for job_id, run in self._runs.items():
                self._terminated.setdefault(job_id, "shutdown")
                run.options.terminate = True
            self._slots.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
