"""Dispatch planning (pure): what one wake of flightd's dispatcher does to the queue.

Given the queue, the running jobs, the throttle and the governor (or none), :func:`plan_wake` says
which queued jobs expire (deadline passed while queued), which the governor's admission control
rejects (with its reason), and which start now, in order. flightd's dispatcher only carries the plan
out (journal, executor, state events). No clock, MQTT or disk here: ``now`` is an argument.

Order and admission: the queue's one ordering rule (:mod:`flight.queue_policy`). Without a governor
every runnable job is admitted in that order (the same policy without a budget); with one,
:meth:`flight.governor.Governor.dispatch` walks the same order within the budget, and its started
and waiting jobs are admitted in that order.

Start limit: nothing starts while starting is held (``may_start`` false: flightd is stopping, or its
journal cannot be written) or in SAFE mode; otherwise
up to ``2 * concurrency`` jobs may be on the executor (``concurrency`` computing plus as many
waiting for a slot), so inference runs back to back without waiting for the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flight.governor import Decision, Governor
from flight.governor.admission import RunningJob
from flight.queue_policy import QueuedJob, expired, runnable
from link.messages import Mode


@dataclass
class Throttle:
    """What the executor may use right now (set by the governor, or fixed by configuration).

    ``concurrency``: jobs computing at once; ``intra_op_threads``: ONNX Runtime threads per job;
    ``duty_cycle``: fraction of time the executor may run (0..1); ``budget_w``: the governor's board
    power budget (W), None without a governor.
    """

    concurrency: int
    intra_op_threads: int
    duty_cycle: float = 1.0
    mode: Mode = Mode.NOMINAL
    budget_w: float | None = None

    @classmethod
    def from_decision(cls, d: Decision, max_concurrency: int, max_threads: int) -> Throttle:
        """The governor's decision within the configured executor (``executor.max_concurrency``,
        ``executor.intra_op_threads``): never more jobs or threads than configured, at least 1 thread."""
        return cls(
            concurrency=min(d.concurrency, max_concurrency),
            intra_op_threads=max(1, min(d.intra_op_threads, max_threads)),
            duty_cycle=d.duty_cycle,
            mode=d.mode,
            budget_w=d.budget_w,
        )

    @property
    def executor_slots(self) -> int:
        """Jobs the executor may compute at once: ``concurrency``, 0 in SAFE mode."""
        return 0 if self.mode is Mode.SAFE else self.concurrency

    @property
    def busy_cores(self) -> float:
        """Busy cores the executor may use: slots x threads x duty cycle (0 in SAFE mode)."""
        return self.executor_slots * self.intra_op_threads * self.duty_cycle

    def start_limit(self, may_start: bool) -> int:
        """Most jobs on the executor (computing or waiting for a slot) after a wake; 0 = start none."""
        return 2 * self.concurrency if may_start and self.mode is not Mode.SAFE else 0


@dataclass
class DispatchStep:
    """One wake's plan: ``expire`` and ``reject`` (job, reason) leave the queue in a terminal state
    (``expired``, ``rejected``); ``start`` go to the executor, in this order."""

    expire: list[tuple[QueuedJob, str]] = field(default_factory=list)
    reject: list[tuple[QueuedJob, str]] = field(default_factory=list)
    start: list[QueuedJob] = field(default_factory=list)


def plan_wake(
    now: float,
    queued: Sequence[QueuedJob],
    running: Sequence[RunningJob],
    throttle: Throttle,
    *,
    may_start: bool = True,
    governor: Governor | None = None,
    rate: float = 1.0,
) -> DispatchStep:
    """Plan one dispatcher wake (see the module docstring).

    ``now`` and the queued jobs' times are on the queue's clock (UTC in flightd); ``rate`` is mission
    seconds per second of that clock (the mission clock's rate), used by the governor's admission.
    """
    step = DispatchStep()
    gone = expired(queued, now)
    for job in gone:
        step.expire.append((job, f"deadline passed while queued ({job.deadline_s:.3f})"))
    expired_ids = {j.job_id for j in gone}
    live = [j for j in queued if j.job_id not in expired_ids]
    if governor is None:
        admitted = runnable(live, now)
    else:
        plan = governor.dispatch(now, live, running, rate=rate)
        step.reject = [(job, f"admission control: {reason}") for job, reason in plan.reject]
        admitted = [*plan.start, *plan.wait]
    free = max(0, throttle.start_limit(may_start) - len(running))
    step.start = admitted[:free]
    return step
