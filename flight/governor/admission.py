"""Scheduler policy (pure): which queued jobs to start next, which to defer, which to reject.

Order: the queue's one ordering rule, :func:`flight.queue_policy.policy_order` (priority classes, 9
first; earliest deadline first within a class, no deadline last; then first enqueued; exact ties in
queue order, so the plan is deterministic for a given queue). Without a governor flightd starts jobs
in that order alone; this module adds the budget.

Admission control walks the queue in that order, accumulating the work ahead of each job (the
remaining work of running jobs plus the admitted jobs before it), and estimates its finish time at
the current allocation with the per-model costs of :class:`flight.governor.costs.CostModel`:

    finish = now + max( (core_s_ahead + core_s_job) / busy_cores ,          (time at the allocation)
                        (energy_j_ahead + energy_j_job) / (budget_w - idle_w) )  (energy within budget)

- reject: the deadline has passed, or the job could not finish before it even alone at full power
  (``full_cores`` busy cores) -- no budget would ever save it, so it must not waste energy;
- defer: it cannot finish before its deadline within the current budget behind the work ahead
  (it stays queued and is re-examined next cycle, when the budget may be larger);
- start: admitted, and a concurrency slot is free.

A job's work is its units times the runs of its mode (:func:`flight.governor.costs.checked_units`):
the stronger of the mode it asks for and ``floor``, the governor's high-flux mode (docs/radiation.md).
Every deferral and rejection carries its reason, with durations in mission seconds (the governor's
time base, in which the cost model's estimates are taken).

Clocks: ``now`` and the jobs' ``enqueued_s``/``deadline_s`` are on one clock, the queue's
(:mod:`flight.queue_policy`); ``rate`` is mission seconds per second of that clock. The simulator
keeps its queue on mission time (``rate`` 1); flightd keeps UTC and passes its mission clock's rate,
so a duration ``d`` (mission s) ends ``d / rate`` later on the queue's clock. Only durations are
converted, never the jobs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flight.governor.costs import CostModel, checked_units
from flight.queue_policy import QueuedJob, policy_order
from flight.radiation.redundancy import strongest
from link.messages import Redundancy


@dataclass(frozen=True)
class RunningJob:
    """A job on the executor; ``done_fraction`` of its work is done (0 if unknown); ``redundancy`` the mode
    it runs under."""

    job_id: str
    model: str
    units: float = 1.0
    done_fraction: float = 0.0
    redundancy: Redundancy = Redundancy.NONE


@dataclass(frozen=True)
class Allocation:
    """The executor allocation the governor decided (see Decision): busy cores available to jobs are
    ``concurrency * intra_op_threads * duty_cycle``; ``budget_w`` total board budget, ``idle_w`` idle
    board power (W); ``full_cores`` the most busy cores the board has."""

    concurrency: int
    intra_op_threads: int
    duty_cycle: float
    budget_w: float
    idle_w: float
    full_cores: float

    @property
    def busy_cores(self) -> float:
        return self.concurrency * self.intra_op_threads * self.duty_cycle


@dataclass(frozen=True)
class Verdict:
    job: QueuedJob
    action: str  # "start" | "wait" | "defer" | "reject"
    reason: str
    finish_estimate_s: float


@dataclass
class DispatchPlan:
    """``start``: start these now, in order. ``wait``: admitted, waiting for a free slot.
    ``defer``/``reject``: with reasons. ``verdicts``: one per queued job, in policy order."""

    start: list[QueuedJob] = field(default_factory=list)
    wait: list[QueuedJob] = field(default_factory=list)
    defer: list[tuple[QueuedJob, str]] = field(default_factory=list)
    reject: list[tuple[QueuedJob, str]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)


PRIORITIES = 10
"""Priority classes 0..9 (link.messages.JobRequest.priority)."""


def _units_left(r: RunningJob) -> float:
    """Work units a running job has left, its redundant runs counted."""
    return checked_units(r.units, r.redundancy) * (1.0 - min(1.0, max(0.0, r.done_fraction)))


def committed_core_s(queued: Iterable[QueuedJob], running: Sequence[RunningJob],
                     costs: CostModel) -> tuple[list[float], float]:
    """The work this satellite has committed to, as the cost model estimates it (busy core-s): queued
    work per priority (a list of :data:`PRIORITIES`, index = priority) and the remaining work of the
    running jobs. What a fleet dispatcher adds up as the work ahead of a job (``Status.outlook``)."""
    per_priority = [0.0] * PRIORITIES
    for job in queued:
        units = checked_units(job.units, job.redundancy)
        per_priority[min(PRIORITIES - 1, max(0, job.priority))] += units * costs.estimate(job.model).core_s
    running_core_s = sum(_units_left(r) * costs.estimate(r.model).core_s for r in running)
    return per_priority, running_core_s


def plan_dispatch(
    now: float,
    queued: Iterable[QueuedJob],
    running: Sequence[RunningJob],
    alloc: Allocation,
    costs: CostModel,
    rate: float = 1.0,
    floor: Redundancy = Redundancy.NONE,
) -> DispatchPlan:
    """Decide what to start, defer and reject now (pure; see the module docstring).

    ``now``: on the queue's clock; ``rate``: mission seconds per second of that clock (> 0); ``floor``:
    the mode no job runs below now.
    ``Verdict.finish_estimate_s`` is on the queue's clock."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    plan = DispatchPlan()
    free_slots = max(0, alloc.concurrency - len(running))
    cores = alloc.busy_cores
    compute_w = max(0.0, alloc.budget_w - alloc.idle_w)
    core_ahead = 0.0
    energy_ahead = 0.0
    for r in running:
        c = costs.estimate(r.model)
        left = _units_left(r)
        core_ahead += left * c.core_s
        energy_ahead += left * c.energy_j
    for job in policy_order(queued):
        c = costs.estimate(job.model)
        units = checked_units(job.units, strongest(job.redundancy, floor))
        core_job, energy_job = units * c.core_s, units * c.energy_j
        alone_full = now + core_job / alloc.full_cores / rate if alloc.full_cores > 0 else math.inf
        if cores > 0 and compute_w > 0:
            finish = now + max((core_ahead + core_job) / cores, (energy_ahead + energy_job) / compute_w) / rate
        else:
            finish = math.inf
        dl = job.deadline_s
        if dl is not None and dl <= now:
            reason = f"deadline passed {(now - dl) * rate:.1f} s ago"
            plan.reject.append((job, reason))
            plan.verdicts.append(Verdict(job, "reject", reason, finish))
            continue
        if dl is not None and alone_full > dl:
            reason = (f"cannot finish before its deadline even at full power: needs "
                      f"{core_job / alloc.full_cores:.2f} s, {(dl - now) * rate:.2f} s left")
            plan.reject.append((job, reason))
            plan.verdicts.append(Verdict(job, "reject", reason, alone_full))
            continue
        if dl is not None and finish > dl:
            if math.isinf(finish):
                reason = "no compute budget now (deadline still reachable at full power)"
            else:
                reason = (f"cannot finish before its deadline within the {alloc.budget_w:.1f} W budget "
                          f"behind {core_ahead:.1f} core-s of work ahead (ETA {(finish - dl) * rate:.1f} s late)")
            plan.defer.append((job, reason))
            plan.verdicts.append(Verdict(job, "defer", reason, finish))
            continue
        core_ahead += core_job
        energy_ahead += energy_job
        if free_slots > 0 and cores > 0:
            free_slots -= 1
            plan.start.append(job)
            plan.verdicts.append(Verdict(job, "start", "admitted", finish))
        else:
            plan.wait.append(job)
            reason = "admitted, waiting for a slot" if cores > 0 else "admitted, no budget now"
            plan.verdicts.append(Verdict(job, "wait", reason, finish))
    return plan
