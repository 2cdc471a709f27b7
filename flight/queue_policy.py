"""The job queue: one queued-job type and one ordering rule (pure: ``now`` is an argument, no clock).

Order (docs/governor.md "Scheduler policy"): higher ``priority`` first (0..9, 9 most important);
within a priority, earliest deadline first (no deadline counts as +inf); then first enqueued. Jobs
equal on all three keep their order in the queue (the sort is stable), so the first queued runs first.
A job whose deadline has passed (``deadline_s <= now``) is never started: :func:`expired` picks it
out (flightd ends it ``expired``).

Times are seconds on one clock that the caller chooses, ``now`` included: flightd keeps its queue on
UTC (the wire's ``received_utc`` and ``deadline_utc``), the policy simulator on mission time. The
order does not depend on the clock, and :func:`flight.governor.admission.plan_dispatch` converts
only durations (with the clock's rate), never the jobs.

Without a governor this order is the whole policy; with one, admission control walks the queue in
the same order (:func:`flight.governor.admission.plan_dispatch`) and adds the budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from link.messages import Redundancy


@dataclass(frozen=True)
class QueuedJob:
    """A job waiting to run. ``priority`` 0..9; ``enqueued_s`` when it entered the queue and
    ``deadline_s`` its deadline (None: none), both on the caller's clock (s); ``units`` work units
    (batch size) for the per-unit cost model; ``redundancy`` the mode it asks for (or its default: the
    governor may raise it, flight.governor.costs.checked_units counts it)."""

    job_id: str
    priority: int
    model: str
    enqueued_s: float
    deadline_s: float | None = None
    units: float = 1.0
    redundancy: Redundancy = Redundancy.NONE


def order_key(job: QueuedJob) -> tuple[int, float, float]:
    """Sort key of the one ordering rule: (-priority, deadline or +inf, enqueued)."""
    return (-job.priority, job.deadline_s if job.deadline_s is not None else math.inf, job.enqueued_s)


def policy_order(jobs: Iterable[QueuedJob]) -> list[QueuedJob]:
    """``jobs`` in the order to run them (stable: exact ties keep their queue order)."""
    return sorted(jobs, key=order_key)


def deadline_passed(deadline_s: float | None, now: float) -> bool:
    """Whether a job with this deadline may no longer start (``deadline_s <= now``; None never passes).
    flightd applies it at intake too: a job submitted past its deadline is journaled ``expired``."""
    return deadline_s is not None and deadline_s <= now


def expired(jobs: Iterable[QueuedJob], now: float) -> list[QueuedJob]:
    """Jobs whose deadline is already past, in queue order."""
    return [j for j in jobs if deadline_passed(j.deadline_s, now)]


def runnable(jobs: Iterable[QueuedJob], now: float) -> list[QueuedJob]:
    """Jobs that may still start (no deadline, or one after ``now``), in policy order."""
    return policy_order(j for j in jobs if not deadline_passed(j.deadline_s, now))


def next_job(jobs: Iterable[QueuedJob], now: float) -> QueuedJob | None:
    """The job to start now, or None when nothing is runnable."""
    order = runnable(jobs, now)
    return order[0] if order else None
