"""flight.dispatch: one dispatcher wake planned as data (expire, reject, start), with and without a
governor; the throttle taken from a governor decision."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flight.dispatch import Throttle, plan_wake
from flight.governor import Decision, Governor, GovernorConfig
from flight.governor.admission import Allocation, RunningJob, plan_dispatch
from flight.governor.costs import CostModel, ModelCost
from flight.queue_policy import QueuedJob
from link.messages import Mode

NOW = 1_700_000_000.0  # UTC s, the daemon's queue clock


def job(job_id: str, priority: int = 5, deadline: float | None = None, enqueued: float = NOW - 10,
        units: float = 1.0) -> QueuedJob:
    return QueuedJob(job_id, priority, "tile", enqueued, deadline, units)


def ids(jobs: list[QueuedJob]) -> list[str]:
    return [j.job_id for j in jobs]


def test_without_a_governor_every_runnable_job_is_admitted_in_policy_order_up_to_the_limit() -> None:
    queue = [job("low", 1), job("gone", 9, deadline=NOW - 1), job("high", 9), job("edf", 5, deadline=NOW + 60),
             job("mid", 5), job("now", 7, deadline=NOW)]
    step = plan_wake(NOW, queue, [], Throttle(concurrency=2, intra_op_threads=1))
    assert [(j.job_id, why) for j, why in step.expire] == [
        ("gone", f"deadline passed while queued ({NOW - 1:.3f})"),
        ("now", f"deadline passed while queued ({NOW:.3f})"),  # deadline == now is past
    ]
    assert not step.reject
    assert ids(step.start) == ["high", "edf", "mid", "low"]  # 2 computing + 2 waiting for a slot
    one_running = [RunningJob("r", "tile")]
    assert ids(plan_wake(NOW, queue, one_running, Throttle(2, 1)).start) == ["high", "edf", "mid"]
    assert ids(plan_wake(NOW, queue, one_running, Throttle(1, 1)).start) == ["high"]
    full = [RunningJob("r1", "tile"), RunningJob("r2", "tile")]
    assert plan_wake(NOW, queue, full, Throttle(1, 1)).start == []


def test_nothing_starts_in_safe_mode_or_while_stopping_but_expiry_goes_on() -> None:
    queue = [job("a"), job("late", deadline=NOW - 5)]
    safe = plan_wake(NOW, queue, [], Throttle(2, 1, mode=Mode.SAFE))
    stopping = plan_wake(NOW, queue, [], Throttle(2, 1), may_start=False)
    for step in (safe, stopping):
        assert step.start == [] and ids([j for j, _ in step.expire]) == ["late"]


def test_throttle_from_a_decision_stays_within_the_configured_executor() -> None:
    d = Decision(mode=Mode.THROTTLED, budget_w=7.5, concurrency=3, intra_op_threads=4, duty_cycle=0.4,
                 preempt=False, reasons=[], mode_changed=False)
    t = Throttle.from_decision(d, max_concurrency=2, max_threads=2)
    assert (t.concurrency, t.intra_op_threads, t.duty_cycle, t.mode, t.budget_w) == (2, 2, 0.4, Mode.THROTTLED, 7.5)
    assert t.executor_slots == 2 and t.start_limit(True) == 4 and t.start_limit(False) == 0
    safe = Throttle.from_decision(
        Decision(mode=Mode.SAFE, budget_w=3.0, concurrency=0, intra_op_threads=0, duty_cycle=0.0, preempt=True,
                 reasons=[], mode_changed=True), 2, 2)
    assert safe.intra_op_threads == 1 and safe.executor_slots == 0 and safe.start_limit(True) == 0


def test_governor_rejections_carry_admission_reasons_in_mission_seconds() -> None:
    """A 1000-tile job needs 1000 x 2/496 core-s / 2 cores = 2.02 s at full power. Its deadline is 0.5 s
    (UTC) away: at mission rate 2 that is 1.00 mission s, too little; at rate 8 it is 4.00 s, enough."""
    gov = Governor(GovernorConfig())
    queue = [job("big", 5, deadline=NOW + 0.5, units=1000), job("free", 5)]
    step = plan_wake(NOW, queue, [], Throttle(1, 2), governor=gov, rate=2.0)
    assert [(j.job_id, why) for j, why in step.reject] == [
        ("big", "admission control: cannot finish before its deadline even at full power: "
                "needs 2.02 s, 1.00 s left"),
    ]
    assert ids(step.start) == ["free"] and not step.expire
    step = plan_wake(NOW, queue, [], Throttle(1, 2), governor=gov, rate=8.0)
    assert not step.reject  # feasible at full power; no budget before the first decision: it waits or defers


times = st.integers(-20, 20).map(float)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), times, st.none() | times, st.integers(1, 8192)), max_size=8),
    st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]),
    st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    st.integers(0, 2),
)
def test_admission_on_the_utc_queue_equals_admission_on_jobs_converted_to_mission_time(
    raw: list[tuple[int, float, float | None, int]], rate: float, busy: float, n_running: int
) -> None:
    """What flightd did before one queue type: convert every job to mission seconds on each wake and
    plan there. Planning on the UTC queue with the clock's rate gives the same verdicts and reasons.
    Times, rates and costs are dyadic (1/1024 core-s per unit, 2 W per core) so that both paths compute
    exactly and a tie at a deadline is the same tie on both clocks."""
    now_utc, now_s = 1000.0, 5000.0
    queue = [QueuedJob(f"j{i}", p, "tile", now_utc + e, None if d is None else now_utc + d, float(u))
             for i, (p, e, d, u) in enumerate(raw)]
    mission = [QueuedJob(j.job_id, j.priority, j.model, now_s + (j.enqueued_s - now_utc) * rate,
                         None if j.deadline_s is None else now_s + (j.deadline_s - now_utc) * rate, j.units)
               for j in queue]
    running = [RunningJob(f"r{i}", "tile", units=500.0) for i in range(n_running)]
    alloc = Allocation(1, 2, busy / 2, 3.0 + 2.0 * busy, 3.0, 2.0)
    costs = CostModel(2.0, seed=ModelCost(time_s=1 / 2048, core_s=1 / 1024, energy_j=2 / 1024, threads=2))
    on_utc = plan_dispatch(now_utc, queue, running, alloc, costs, rate)
    on_mission = plan_dispatch(now_s, mission, running, alloc, costs)
    assert [(v.job.job_id, v.action, v.reason) for v in on_utc.verdicts] == [
        (v.job.job_id, v.action, v.reason) for v in on_mission.verdicts]
