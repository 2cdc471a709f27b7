"""flight.queue_policy: priority classes, EDF within a class, FIFO on ties, expired jobs never picked."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from flight.queue_policy import QueuedJob, expired, next_job


def job(job_id: str, priority: int = 5, deadline: float | None = None, received: float = 0.0) -> QueuedJob:
    return QueuedJob(job_id, priority, "m", received, deadline)


def test_higher_priority_class_first_even_with_later_deadline() -> None:
    jobs = [job("low-urgent", 1, deadline=101.0), job("high-lax", 9, deadline=1e9), job("mid", 5)]
    assert next_job(jobs, 100.0) == jobs[1]


def test_edf_within_a_class_and_no_deadline_counts_as_infinite() -> None:
    jobs = [job("none", 5, None, 0.0), job("late", 5, 500.0, 1.0), job("soon", 5, 200.0, 2.0)]
    assert next_job(jobs, 100.0).job_id == "soon"  # type: ignore[union-attr]
    assert next_job(jobs[:2], 100.0).job_id == "late"  # type: ignore[union-attr]


def test_fifo_on_equal_priority_and_deadline() -> None:
    jobs = [job("second", 5, 300.0, 2.0), job("first", 5, 300.0, 1.0), job("third", 5, 300.0, 3.0)]
    assert next_job(jobs, 0.0).job_id == "first"  # type: ignore[union-attr]
    no_deadline = [job("b", 3, None, 7.0), job("a", 3, None, 6.0)]
    assert next_job(no_deadline, 0.0).job_id == "a"  # type: ignore[union-attr]


def test_expired_jobs_are_not_started_and_are_picked_out() -> None:
    jobs = [job("past", 9, 99.0), job("now", 9, 100.0), job("future", 1, 100.5), job("open", 0, None)]
    assert [j.job_id for j in expired(jobs, 100.0)] == ["past", "now"]  # deadline <= now is expired
    assert next_job(jobs, 100.0).job_id == "future"  # type: ignore[union-attr]
    assert next_job(jobs[:2], 100.0) is None
    assert next_job([], 0.0) is None


job_strategy = st.builds(
    job,
    job_id=st.just(""),
    priority=st.integers(0, 9),
    deadline=st.none() | st.sampled_from([50.0, 100.0, 150.0, 200.0]),
    received=st.sampled_from([0.0, 1.0, 2.0, 3.0]),
)


def reference_pick(jobs: list[QueuedJob], now: float) -> QueuedJob | None:
    """The documented order, step by step: drop expired, keep the highest priority, then the earliest
    deadline (none = latest), then the earliest received, then the first in the queue."""
    pool = [j for j in jobs if j.deadline_s is None or j.deadline_s > now]
    if not pool:
        return None
    top = max(j.priority for j in pool)
    pool = [j for j in pool if j.priority == top]
    dl = min(math.inf if j.deadline_s is None else j.deadline_s for j in pool)
    pool = [j for j in pool if (math.inf if j.deadline_s is None else j.deadline_s) == dl]
    first = min(j.enqueued_s for j in pool)
    return next(j for j in pool if j.enqueued_s == first)


@settings(max_examples=500, deadline=None)
@given(st.lists(job_strategy, max_size=12), st.sampled_from([0.0, 100.0, 150.0, 250.0]))
def test_next_job_is_the_documented_minimum(raw: list[QueuedJob], now: float) -> None:
    jobs = [QueuedJob(f"j{i}", j.priority, j.model, j.enqueued_s, j.deadline_s) for i, j in enumerate(raw)]
    got = next_job(jobs, now)
    want = reference_pick(jobs, now)
    assert (got.job_id if got else None) == (want.job_id if want else None)
    gone = expired(jobs, now)
    assert all(j.deadline_s is not None and j.deadline_s <= now for j in gone)
    assert len(gone) + sum(1 for j in jobs if j.deadline_s is None or j.deadline_s > now) == len(jobs)
