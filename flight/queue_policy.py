"""Which queued job runs next: pure, no clock (``now_utc`` is an argument).

Order: higher ``priority`` first (0..9, 9 most important); within a priority, earliest deadline first
(no deadline counts as +inf); then first received. A job whose deadline has passed is not started:
:func:`expired` picks it out for the ``expired`` state instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    model: str
    priority: int
    deadline_utc: float | None
    received_utc: float


def order_key(job: QueuedJob) -> tuple[int, float, float]:
    return (-job.priority, job.deadline_utc if job.deadline_utc is not None else math.inf, job.received_utc)


def expired(jobs: Iterable[QueuedJob], now_utc: float) -> list[QueuedJob]:
    """Jobs whose deadline is already past."""
    return [j for j in jobs if j.deadline_utc is not None and j.deadline_utc <= now_utc]


def next_job(jobs: Iterable[QueuedJob], now_utc: float) -> QueuedJob | None:
    """The job to start now, or None when nothing is runnable."""
    runnable = [j for j in jobs if j.deadline_utc is None or j.deadline_utc > now_utc]
    return min(runnable, key=order_key, default=None)
