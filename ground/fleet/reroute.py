"""The re-route rule (pure): a job routed to a satellite that goes SAFE before running it is sent to
another satellite exactly once, and never runs twice.

A job is re-routed only after the first satellite has *confirmed* that it will never run it there:

1. the satellite is SAFE and the job's latest state there is ``queued`` (a job waiting on a SAFE
   satellite waits at least until SAFE ends; one preempted by SAFE is requeued, and counts too), the
   job was never re-routed, and another satellite is eligible -> ask the satellite to cancel it
   (:attr:`Step.CANCEL`);
2. flightd decides on its own event loop, where taking a job off the queue and handing it to the
   executor is one step (flight/daemon.py ``_cancel``): the reply is ``cancelled`` (journaled: it will
   never run there) -> :attr:`Step.RESUBMIT`; or ``cancelling`` (it had started meanwhile: it ends
   ``cancelled``, or ``done`` if it finished first) -> follow it, re-routing only on ``cancelled``;
3. a refused cancel ("nothing to cancel": it is running or done) or a lost reply is no confirmation:
   the job is followed where it is. A ``cancelled`` state from that satellite after a cancel was sent
   confirms it (the reply may be lost across a broker failover); a job requeued there while the
   satellite is still SAFE may be asked again;
4. after the re-route the job follows the new satellite only (late messages from the first one are
   ignored), and is never re-routed again: if the second satellite goes SAFE too, the job waits there.

Nothing here does I/O; :class:`ground.fleet.dispatcher.FleetDispatcher` carries the steps out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from link.messages import JobState


class Step(enum.Enum):
    """What the dispatcher does next for a job."""

    WAIT = "wait"
    """Nothing: keep following the job where it is."""
    CANCEL = "cancel"
    """Ask the job's satellite to cancel it (the re-route has begun)."""
    RESUBMIT = "resubmit"
    """The satellite confirmed it will never run the job: submit it to another satellite."""


CANCELLED_REPLY = JobState.CANCELLED.value
CANCELLING_REPLY = "cancelling"
"""The ``state`` of flightd's reply to a cancel command: cancelled at once, or stopping a run."""


@dataclass
class JobCourse:
    """One job's course through the fleet: where it is (``sat``), its latest state there (None until
    acknowledged), and the satellites it was sent to (``sats``, in order)."""

    job_id: str
    sat: str
    state: JobState | None = None
    sats: list[str] = field(default_factory=list)
    cancel_sent: bool = False
    cancel_pending: bool = False

    def __post_init__(self) -> None:
        if not self.sats:
            self.sats.append(self.sat)

    @property
    def rerouted(self) -> bool:
        return len(self.sats) > 1

    def on_state(self, sat: str, state: JobState) -> Step:
        """A state event of the job from ``sat`` (ignored unless it is the job's current satellite)."""
        if sat != self.sat:
            return Step.WAIT
        self.state = state
        if state is JobState.CANCELLED and self.cancel_sent and not self.rerouted:
            return Step.RESUBMIT
        return Step.WAIT

    def on_safe(self, target_available: bool) -> Step:
        """The job's satellite is SAFE; ``target_available``: another satellite is eligible now."""
        if (self.rerouted or self.cancel_pending or not target_available or self.state is not JobState.QUEUED):
            return Step.WAIT
        self.cancel_sent = self.cancel_pending = True
        return Step.CANCEL

    def on_cancel_reply(self, state: str | None) -> Step:
        """flightd's reply to the cancel: its ``state`` (``cancelled`` or ``cancelling``), or None when
        it refused or no reply came."""
        self.cancel_pending = False
        if state == CANCELLED_REPLY and not self.rerouted:
            self.state = JobState.CANCELLED
            return Step.RESUBMIT
        return Step.WAIT

    def moved(self, sat: str) -> None:
        """The job was submitted to ``sat`` (after :attr:`Step.RESUBMIT`)."""
        self.sat, self.state = sat, None
        self.sats.append(sat)
        self.cancel_sent = self.cancel_pending = False

    @property
    def failed(self) -> bool:
        """The job ended on its satellite without a result and will not move: cancelled by someone
        else, failed, expired or rejected."""
        return self.state is not None and self.state.terminal and self.state is not JobState.DONE and not (
            self.state is JobState.CANCELLED and self.cancel_sent and not self.rerouted)
