"""Runs ONNX Runtime sessions on a thread pool of flightd's own.

Never the event loop's default executor (aiomqtt's connect uses it). Every run gets a fresh
``RunOptions`` so that :meth:`InferenceExecutor.terminate` can stop it between graph nodes (the flag
stays set once raised, ../shared/reference/boards-and-runtime.md); ``session.run`` releases the GIL.
The executor also integrates busy core-seconds (run time x intra-op threads), from which flightd
reports ``busy_cores`` to the plant and the ground.
"""

from __future__ import annotations

import asyncio
import threading
import time
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


@dataclass(frozen=True)
class RunOutcome:
    outputs: Arrays
    run_s: float
    provider: str


class InferenceExecutor:
    """``await run(...)`` executes one inference off the event loop; ``terminate(job_id)`` stops it."""

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="orbitd-infer")
        self._runs: dict[str, tuple[ort.RunOptions, float, int]] = {}
        self._terminated: dict[str, str] = {}
        self._lock = threading.Lock()
        self._core_s_done = 0.0

    @staticmethod
    def _run_blocking(session: ort.InferenceSession, feeds: Arrays, options: ort.RunOptions) -> Arrays:
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, feeds, options)
        return dict(zip(names, values, strict=True))

    async def run(self, job_id: str, session: ort.InferenceSession, feeds: Arrays, threads: int) -> RunOutcome:
        """Run ``session`` on ``feeds``; RunTerminated if stopped by :meth:`terminate`."""
        options = ort.RunOptions()
        options.log_severity_level = 3
        start = time.monotonic()
        with self._lock:
            self._runs[job_id] = (options, start, threads)
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._pool, self._run_blocking, session, feeds, options)
        except Exception as exc:
            reason = self._terminated.pop(job_id, None)
            if reason is not None:
                raise RunTerminated(job_id, reason) from exc
            raise
        finally:
            end = time.monotonic()
            with self._lock:
                self._runs.pop(job_id, None)
                self._core_s_done += (end - start) * threads
        self._terminated.pop(job_id, None)
        return RunOutcome(outputs, end - start, session.get_providers()[0])

    def terminate(self, job_id: str, reason: str) -> bool:
        """Ask the run of ``job_id`` to stop at the next graph node; False if it is not running."""
        with self._lock:
            run = self._runs.get(job_id)
            if run is None:
                return False
            self._terminated[job_id] = reason
            run[0].terminate = True
            return True

    def running(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def busy_core_seconds(self) -> float:
        """Core-seconds spent running so far, including the elapsed part of runs in progress."""
        now = time.monotonic()
        with self._lock:
            return self._core_s_done + sum((now - start) * threads for _, start, threads in self._runs.values())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
