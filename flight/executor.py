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
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

Arrays = dict[str, np.ndarray[Any, Any]]


class RunTerminated(RuntimeError):
    """A run stopped by :meth:`InferenceExecutor.terminate`; ``reason`` says who stopped it."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id} terminated: {reason}")
        self.job_id = job_id
        self.reason = reason


class _StoppedBeforeStart(RuntimeError):
    pass


@dataclass(frozen=True)
class RunOutcome:
    """``then``: what the ``then`` of :meth:`InferenceExecutor.run` returned (None without one)."""

    outputs: Arrays
    run_s: float
    provider: str
    then: Any = None


@dataclass
class _Run:
    options: ort.RunOptions
    threads: int
    start: float | None = None
    end: float | None = None


class InferenceExecutor:
    """``await run(...)`` executes one inference off the event loop; ``terminate(job_id)`` stops it."""

    def __init__(self, max_workers: int, cpus: Sequence[int] = ()) -> None:
        """``cpus``: pin the inference threads to these CPUs (Linux; empty: not pinned)."""
        self.max_workers = max_workers
        self.cpus = frozenset(cpus)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="orbitd-infer",
                                        initializer=self._pin)
        self._runs: dict[str, _Run] = {}
        self._terminated: dict[str, str] = {}
        self._lock = threading.Lock()
        self._slots = threading.Condition(self._lock)
        self._limit = max_workers
        self._active = 0
        self._duty = 1.0
        self._core_s_done = 0.0
        self._core_s_reported = 0.0

    def _pin(self) -> None:
        """The pool thread's initializer: on Linux ``sched_setaffinity(0)`` sets the calling thread's CPUs."""
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def set_throttle(self, limit: int, duty_cycle: float) -> None:
        """At most ``limit`` runs at once (0..max_workers); compute for ``duty_cycle`` (0..1] of the time."""
        with self._slots:
            self._limit = max(0, min(limit, self.max_workers))
            self._duty = min(1.0, max(duty_cycle, 1e-3))
            self._slots.notify_all()

    def _run_blocking(self, job_id: str, session: ort.InferenceSession, feeds: Arrays,
                      then: Callable[[Arrays, float], Any] | None) -> tuple[Arrays, float, Any]:
        with self._slots:
            while self._active >= self._limit and job_id not in self._terminated:
                self._slots.wait(0.1)
            run = self._runs[job_id]
            if job_id in self._terminated:
                raise _StoppedBeforeStart(job_id)
            self._active += 1
            run.start = time.monotonic()
            duty = self._duty
        try:
            names = [o.name for o in session.get_outputs()]
            try:
                values = session.run(names, feeds, run.options)
            finally:  # a terminated or failed run stops counting when it stops, not when the loop notices
                end = time.monotonic()
                with self._lock:
                    run.end = end
            run_s = end - run.start
            outputs = dict(zip(names, values, strict=True))
            after = None if then is None else then(outputs, run_s)  # before the rest: results go out at once
            if duty < 1.0:
                time.sleep(run_s * (1.0 - duty) / duty)
            return outputs, run_s, after
        finally:
            with self._slots:
                self._active -= 1
                self._slots.notify_all()

    async def run(self, job_id: str, session: ort.InferenceSession, feeds: Arrays, threads: int,
                  then: Callable[[Arrays, float], Any] | None = None) -> RunOutcome:
        """Run ``session`` on ``feeds`` once a slot is free; RunTerminated if stopped by :meth:`terminate`.
        ``then(outputs, run_s)`` runs on the inference thread right after a run that succeeded (to pack
        and hand on the result without a hop through the event loop); what it returns is
        :attr:`RunOutcome.then`, what it raises fails the run."""
        options = ort.RunOptions()
        options.log_severity_level = 3
        run = _Run(options, threads)
        with self._lock:
            self._runs[job_id] = run
        loop = asyncio.get_running_loop()
        try:
            outputs, run_s, after = await loop.run_in_executor(self._pool, self._run_blocking, job_id, session,
                                                               feeds, then)
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
        return RunOutcome(outputs, run_s, session.get_providers()[0], after)

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
