"""What flightd counts about soft errors, and which jobs a corrupt weight block makes suspect (pure).

:class:`SoftErrorLedger` holds the counters flightd publishes on the ``soft_errors`` telemetry channel
(link.telemetry, in its wire order). :class:`RunLog` remembers, for a few scrub periods, which weight
replicas each finished job's runs read and when: a block the scrubber finds corrupt was clean at its
``clean_at``, so a job is suspect when every run it made read the corrupt replica of that model and
the last of them ended after ``clean_at`` (a run in progress while the block was repaired included).
A job with a run on another, clean replica is not suspect: its runs agreed with that replica or were
voted on. Times are seconds of the caller's monotonic clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields

from flight.radiation.weights import CorruptBlock
from link.telemetry import CHANNELS, SOFT_ERRORS


@dataclass
class SoftErrorLedger:
    """Counts since start (see link.telemetry's ``soft_errors`` channel for each meaning and unit)."""

    weight_bytes: float = 0.0
    scrub_cpu: float = 0.0
    scrub_cpu_s: float = 0.0
    blocks_corrupt: int = 0
    bits_repaired: int = 0
    repairs_failed: int = 0
    suspect_jobs: int = 0
    reruns_changed: int = 0
    checked_jobs: int = 0
    mismatches: int = 0
    unresolved: int = 0
    first_run_core_s: float = 0.0
    redundant_core_s: float = 0.0
    stored_corrupt: int = 0
    injected_weight_bits: int = 0
    injected_run_faults: int = 0
    run_faults_changed: int = 0
    run_faults_detected: int = 0
    run_faults_escaped: int = 0

    def values(self) -> dict[str, float]:
        """The ``soft_errors`` channel's values, in its wire order."""
        mine = {f.name: float(getattr(self, f.name)) for f in fields(self)}
        return {key: mine[key] for key in CHANNELS[SOFT_ERRORS].keys}


@dataclass(frozen=True)
class JobRuns:
    """One finished job's runs: the model version (``ref``), the replicas they read, when they ran."""

    job_id: str
    ref: str
    slots: frozenset[int]
    start_s: float
    end_s: float


class RunLog:
    """Finished jobs' runs over the last ``keep_s`` seconds (three scrub periods: a flip is found within
    one period plus a step of its block's last clean check)."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._runs: deque[JobRuns] = deque()

    def record(self, runs: JobRuns) -> None:
        self._runs.append(runs)
        while self._runs and self._runs[0].end_s < runs.end_s - self.keep_s:
            self._runs.popleft()

    def suspects(self, corrupt: CorruptBlock) -> list[str]:
        """Jobs whose every run read ``corrupt``'s replica of its model after the block last verified;
        they leave the log (a job is suspect once: its re-run, logged anew, may become suspect again)."""
        hit = [r for r in self._runs
               if r.ref == corrupt.model and r.slots == {corrupt.replica} and r.end_s >= corrupt.clean_at]
        for r in hit:
            self._runs.remove(r)
        return [r.job_id for r in hit]

    def __len__(self) -> int:
        return len(self._runs)
