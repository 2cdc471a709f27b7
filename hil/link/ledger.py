"""What the ground knows of its jobs across a link with passes: when each was sent, acknowledged and
answered (mission seconds), how often, and what that says about delivery (lost, run twice, delivered
twice), which jobs are due to be sent again, and how the latencies sit against the contact plan.

Pure: events in, figures out; :class:`hil.link.workload.PassWorkload` feeds it from the ground broker.

Exactly once is made here and onboard, not in the link: the bridge delivers at least once (a message
whose PUBACK was lost at a cut comes again at the next contact), flightd runs a job id once (its
journal), and the ground keeps the first result of a job id and drops the rest (:class:`Delivery`).
A *different* result for a job id (another ``finished_utc`` or ``attempt``) would mean the job ran
twice: that is what ``duplicated`` counts, and it must stay 0.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from hil.link.contact import ContactPlan


class Delivery(enum.Enum):
    """What a result message is to the ground: the job's ``first`` result, a ``repeat`` of it (the
    link's at-least-once delivery: dropped by job id), or a ``second_run`` (another result for the same
    job: it ran twice)."""

    FIRST = "first"
    REPEAT = "repeat"
    SECOND_RUN = "second_run"
    UNKNOWN = "unknown"


@dataclass
class JobTrack:
    """One job as the ground saw it, in mission seconds: first and last send, first state event
    (flightd journaled it), first result on the ground; result messages received and the distinct runs
    they came from ((finished_utc, attempt) pairs); a terminal state other than done, with its reason."""

    job_id: str
    sent_s: float
    last_sent_s: float
    sends: int = 1
    acked_s: float | None = None
    result_s: float | None = None
    deliveries: int = 0
    runs: set[tuple[float, int]] = field(default_factory=set)
    failed: str | None = None


@dataclass(frozen=True)
class PlanCheck:
    """Latencies against the contact plan. A job submitted in contact should be answered in the same
    contact; one submitted out of contact in the next contact, i.e. within the gap plus its time in
    contact. ``after_aos_s``: per answered job, result time minus the later of its submission and the
    acquisition of the first contact it could use (the bridge reconnecting, the uplink queue, the run,
    the downlink). ``late``: answered jobs whose result came in a later contact than that one."""

    in_contact: int
    in_contact_same_pass: int
    out_of_contact: int
    out_of_contact_next_pass: int
    late: tuple[str, ...]
    after_aos_s: tuple[float, ...]


def percentile(values: list[float] | tuple[float, ...], q: float) -> float:
    """The ``q``-th percentile (0-100, linear interpolation); NaN for no values."""
    return float(np.percentile(values, q)) if values else math.nan


class JobLedger:
    """Jobs by id (see the module docstring). Every method takes mission seconds."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobTrack] = {}
        self.unknown_results = 0

    def sent(self, job_id: str, t_s: float) -> None:
        """The ground broker took ``job_id`` (first send, or a re-send of a known id)."""
        job = self.jobs.get(job_id)
        if job is None:
            self.jobs[job_id] = JobTrack(job_id, t_s, t_s)
        else:
            job.sends += 1
            job.last_sent_s = t_s

    def acknowledged(self, job_id: str, t_s: float) -> None:
        """A state event of ``job_id`` reached the ground (flightd has journaled it)."""
        job = self.jobs.get(job_id)
        if job is not None and job.acked_s is None:
            job.acked_s = t_s

    def failed(self, job_id: str, t_s: float, reason: str) -> None:
        """``job_id`` ended other than done (rejected, expired, failed, cancelled)."""
        job = self.jobs.get(job_id)
        if job is not None:
            self.acknowledged(job_id, t_s)
            job.failed = job.failed or reason

    def result(self, job_id: str, t_s: float, run: tuple[float, int]) -> Delivery:
        """A result message for ``job_id`` from the run ``run`` = (finished_utc, attempt)."""
        job = self.jobs.get(job_id)
        if job is None:
            self.unknown_results += 1
            return Delivery.UNKNOWN
        self.acknowledged(job_id, t_s)
        job.deliveries += 1
        new_run = run not in job.runs
        job.runs.add(run)
        if job.result_s is None:
            job.result_s = t_s
            return Delivery.FIRST
        return Delivery.SECOND_RUN if new_run else Delivery.REPEAT

    def due_for_resend(self, now_s: float, plan: ContactPlan, contact_s: float) -> list[str]:
        """Jobs not yet acknowledged that have had ``contact_s`` of contact since they were last sent:
        a job the bridge carried in that time would have been acknowledged, so this one was lost on
        the way (or still waits behind a long uplink queue: a re-send is then a harmless duplicate,
        flightd runs an id once)."""
        return [
            j.job_id
            for j in self.jobs.values()
            if j.acked_s is None and j.failed is None and plan.contact_s_between(j.last_sent_s, now_s) >= contact_s
        ]

    # ------------------------------------------------------------------------------------ figures

    @property
    def submitted(self) -> int:
        return len(self.jobs)

    @property
    def done(self) -> int:
        return sum(1 for j in self.jobs.values() if j.result_s is not None)

    def unanswered(self) -> list[str]:
        """Jobs sent that neither produced a result nor ended otherwise: in flight, or lost."""
        return [j.job_id for j in self.jobs.values() if j.result_s is None and j.failed is None]

    def failures(self) -> dict[str, str]:
        return {j.job_id: j.failed for j in self.jobs.values() if j.failed is not None}

    def duplicated(self) -> list[str]:
        """Jobs that ran more than once (more than one distinct result)."""
        return [j.job_id for j in self.jobs.values() if len(j.runs) > 1]

    def repeats(self) -> int:
        """Result messages received beyond the first per run (dropped by job id)."""
        return sum(j.deliveries - len(j.runs) for j in self.jobs.values())

    def resends(self) -> int:
        return sum(j.sends - 1 for j in self.jobs.values())

    def latencies_s(self) -> list[float]:
        """Submit -> result on the ground, per answered job, s."""
        return [j.result_s - j.sent_s for j in self.jobs.values() if j.result_s is not None]

    def plan_check(self, plan: ContactPlan) -> PlanCheck:
        counts = {"in": 0, "in_ok": 0, "out": 0, "out_ok": 0}
        late: list[str] = []
        after: list[float] = []
        for j in self.jobs.values():
            if j.result_s is None:
                continue
            first = plan.first_contact_from(j.sent_s)
            where = "in" if plan.in_contact(j.sent_s) else "out"
            counts[where] += 1
            if first is None:
                late.append(j.job_id)
                continue
            after.append(j.result_s - max(j.sent_s, plan.contacts[first][0]))
            if plan.contact_index(j.result_s) == first:
                counts[f"{where}_ok"] += 1
            else:
                late.append(j.job_id)
        return PlanCheck(counts["in"], counts["in_ok"], counts["out"], counts["out_ok"], tuple(late), tuple(after))
