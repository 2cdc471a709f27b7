"""Scheduler policy: priority classes, EDF, admission control, cost learning."""

from __future__ import annotations

import pytest

from flight.governor.admission import Allocation, RunningJob, plan_dispatch
from flight.governor.costs import TILE_MODEL_INF_PER_S, CostModel
from flight.queue_policy import QueuedJob, policy_order

W_PER_CORE = 35.0
COST = CostModel(W_PER_CORE)
CORE_S = 2.0 / TILE_MODEL_INF_PER_S  # seed: 496 inf/s at 2 threads


def alloc(busy: float, concurrency: int = 1) -> Allocation:
    threads = 2 if busy > 1 else 1
    duty = busy / (concurrency * threads) if concurrency else 0.0
    return Allocation(concurrency, threads, duty, 12.0 + W_PER_CORE * busy, 12.0, 2.0)


def test_priority_classes_then_edf_then_fifo() -> None:
    jobs = [
        QueuedJob("low-early", 1, "m", 0.0, deadline_s=10.0),
        QueuedJob("hi-late", 9, "m", 5.0, deadline_s=500.0),
        QueuedJob("hi-early", 9, "m", 6.0, deadline_s=100.0),
        QueuedJob("hi-nodl", 9, "m", 1.0),
        QueuedJob("mid-a", 5, "m", 2.0),
        QueuedJob("mid-b", 5, "m", 1.0),
    ]
    assert [j.job_id for j in policy_order(jobs)] == ["hi-early", "hi-late", "hi-nodl", "mid-b", "mid-a",
                                                      "low-early"]


def test_starts_in_policy_order_up_to_concurrency() -> None:
    jobs = [QueuedJob(f"j{i}", i % 10, "m", float(i), None, units=10) for i in range(12)]
    plan = plan_dispatch(0.0, jobs, [], alloc(2.0, concurrency=2), COST)
    assert [j.job_id for j in plan.start] == ["j9", "j8"]
    assert len(plan.wait) == 10 and not plan.defer and not plan.reject


def test_reject_when_impossible_even_at_full_power() -> None:
    units = 10_000  # 10k tiles: 40.3 core-s, 20.2 s at 2 cores
    job = QueuedJob("big", 5, "m", 0.0, deadline_s=10.0, units=units)
    plan = plan_dispatch(0.0, [job], [], alloc(2.0), COST)
    assert [j.job_id for j, _ in plan.reject] == ["big"]
    assert "even at full power" in plan.reject[0][1]
    # with a deadline it can meet at full power but not at a quarter core: deferred, with reason
    job2 = QueuedJob("mid", 5, "m", 0.0, deadline_s=30.0, units=units)
    plan = plan_dispatch(0.0, [job2], [], alloc(0.25), COST)
    assert [j.job_id for j, _ in plan.defer] == ["mid"]
    assert "budget" in plan.defer[0][1]
    # the same job at full power is admitted
    plan = plan_dispatch(0.0, [job2], [], alloc(2.0), COST)
    assert [j.job_id for j in plan.start] == ["mid"]


def test_admission_counts_the_work_ahead() -> None:
    """Each job takes 10 s at 1 busy core; the second job's deadline at 15 s is met only if the
    first one (higher priority) did not run first: it is deferred, with an ETA 5 s late."""
    units = round(10.0 / CORE_S)
    a = QueuedJob("a", 9, "m", 0.0, deadline_s=100.0, units=units)
    b = QueuedJob("b", 5, "m", 0.0, deadline_s=15.0, units=units)
    plan = plan_dispatch(0.0, [a, b], [], alloc(1.0), COST)
    assert [j.job_id for j in plan.start] == ["a"]
    assert [j.job_id for j, _ in plan.defer] == ["b"]
    v = {x.job.job_id: x for x in plan.verdicts}
    assert v["a"].finish_estimate_s == pytest.approx(units * CORE_S)
    assert v["b"].finish_estimate_s == pytest.approx(2 * units * CORE_S)
    # a running job's remaining work is ahead too
    running = [RunningJob("r", "m", units=units, done_fraction=0.5)]
    plan = plan_dispatch(0.0, [a], running, alloc(1.0, concurrency=2), COST)
    assert plan.verdicts[0].finish_estimate_s == pytest.approx(1.5 * units * CORE_S)


def test_no_budget_defers_deadline_jobs_and_expired_are_rejected() -> None:
    jobs = [QueuedJob("dl", 5, "m", 0.0, deadline_s=100.0), QueuedJob("free", 5, "m", 0.0),
            QueuedJob("late", 5, "m", 0.0, deadline_s=5.0)]
    plan = plan_dispatch(10.0, jobs, [], Allocation(0, 1, 0.0, 12.0, 12.0, 2.0), COST)
    assert not plan.start
    assert [j.job_id for j, _ in plan.defer] == ["dl"]
    assert [j.job_id for j in plan.wait] == ["free"]
    assert [j.job_id for j, _ in plan.reject] == ["late"] and "passed" in plan.reject[0][1]


def test_cost_model_seed_and_ema() -> None:
    cm = CostModel(w_per_core=2.0, alpha=0.5)
    seed = cm.estimate("unknown")
    assert seed.core_s == pytest.approx(2.0 / 496.0)
    assert seed.energy_j == pytest.approx(2.0 * 2.0 / 496.0)
    cm.observe("m", wall_s=1.0, threads=2, units=100)  # 0.01 s, 0.02 core-s, 0.04 J per unit
    cm.observe("m", wall_s=3.0, threads=1, units=100, energy_j=10.0)  # 0.03 s, 0.03 core-s, 0.1 J
    c = cm.estimate("m")
    assert c.time_s == pytest.approx(0.5 * 0.01 + 0.5 * 0.03)
    assert c.core_s == pytest.approx(0.5 * 0.02 + 0.5 * 0.03)
    assert c.energy_j == pytest.approx(0.5 * 0.04 + 0.5 * 0.1)
    assert c.samples == 2
