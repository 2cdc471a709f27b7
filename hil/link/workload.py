"""The ground workload across a link with passes: jobs go to the ground broker and wait there for the
next contact (store and forward), states and results are followed as they come down, and each job id
is answered once.

Unlike :class:`hil.sil.Workload` (perfect link: submit, wait for the acknowledgement, wait for the
result, all within seconds), nothing here waits on the satellite: across a gap of hours a wall-clock
timeout means nothing. Instead:

* a job counts as sent once the ground broker holds it (:meth:`GroundClient.send_job`); its
  acknowledgement is its first state event, whenever it comes down;
* a job not acknowledged after ``resend_contact_s`` seconds of *contact* since it was last sent is sent
  again under the same id (:meth:`JobLedger.due_for_resend`): it was lost on the way, or still waits
  behind a long uplink queue, in which case flightd's journal drops the copy;
* a result is acknowledged onboard (``ack_result``, no reply awaited) the first time it arrives, and
  again if it keeps arriving after ``resend_contact_s`` of contact (the acknowledgement was lost);
  repeats are dropped by job id (:class:`hil.link.ledger.Delivery`).

Mission time comes from the link's clock (the plant's tones), so latencies are in simulated seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import numpy as np

from ground.client import GroundClient, GroundError, PreparedJob
from hil.link.clock import LinkClock
from hil.link.contact import ContactPlan
from hil.link.ledger import Delivery, JobLedger
from link.codec import WireError, decode
from link.messages import AckResult, JobResult, JobState, JobStateEvent

log = logging.getLogger("hil.link.workload")

M = TypeVar("M", JobStateEvent, JobResult)

POLL_S = 0.05
"""Wall seconds between the workload's checks (backlog, re-sends)."""


class PassWorkload:
    """Jobs of ``model`` with ``inputs`` (one input named ``input_name``) through ``ground``.

    Arrivals: ``schedule`` (mission times at which to send one job each: an open-loop workload), else
    ``backlog`` jobs kept unanswered. ``run()`` until cancelled; the books are in ``ledger``.
    """

    def __init__(
        self,
        ground: GroundClient,
        clock: LinkClock,
        plan: ContactPlan,
        model: str,
        input_name: str,
        inputs: np.ndarray[Any, Any],
        *,
        backlog: int = 8,
        schedule: Sequence[float] = (),
        resend_contact_s: float = 300.0,
        job_prefix: str = "job-",
    ) -> None:
        self.ground, self.clock, self.plan = ground, clock, plan
        self.model, self.input_name, self.inputs = model, input_name, inputs
        self.backlog = backlog
        self.schedule = sorted(schedule)
        self.resend_contact_s = resend_contact_s
        self.job_prefix = job_prefix
        self.ledger = JobLedger()
        self._prepared: dict[str, PreparedJob] = {}
        self._acked_at: dict[str, float] = {}
        self._count = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def submitted(self) -> int:
        return self.ledger.submitted

    @property
    def done(self) -> int:
        return self.ledger.done

    async def run(self) -> None:
        """Follow states and results, send jobs, re-send the lost ones; until cancelled."""
        topics = self.ground.topics
        # flightd's retained status reaches the ground broker only in contact: do not hold the first job
        # for it (the sizes are checked against it once known)
        await self.ground.advertised_status(wait_s=0.0)
        states = await self.ground.watch_topic(topics.job_state_all)
        results = await self.ground.watch_topic(topics.result_all)
        self._tasks = [asyncio.create_task(self._states(states)), asyncio.create_task(self._results(results)),
                       asyncio.create_task(self._resend())]
        try:
            if self.schedule:
                for t_s in self.schedule:
                    await self.clock.sleep_until(t_s)
                    await self._send_new()
                await asyncio.Event().wait()
            while True:
                outstanding = self.ledger.submitted - self.ledger.done - len(self.ledger.failures())
                if outstanding < self.backlog:
                    await self._send_new()
                else:
                    await asyncio.sleep(POLL_S)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send_new(self) -> None:
        self._count += 1
        job = await self.ground.prepare_job(self.model, {self.input_name: self.inputs},
                                            job_id=f"{self.job_prefix}{self._count:05d}")
        await self.ground.send_job(job)
        self._prepared[job.job_id] = job
        self.ledger.sent(job.job_id, self.clock.now())

    async def _resend(self) -> None:
        while True:
            await asyncio.sleep(POLL_S * 5)
            now = self.clock.now()
            for job_id in self.ledger.due_for_resend(now, self.plan, self.resend_contact_s):
                log.info("job %s not acknowledged after %.0f s of contact: sent again", job_id, self.resend_contact_s)
                try:
                    await self.ground.send_job(self._prepared[job_id])
                except GroundError as exc:
                    log.warning("re-send of %s: %s", job_id, exc)
                    continue
                self.ledger.sent(job_id, now)

    async def _job_messages(
        self, queue: asyncio.Queue[tuple[str, bytes]], kind: type[M]
    ) -> AsyncIterator[tuple[str, M]]:
        """(job id, message) of every decodable ``kind`` message on a job tree; empty retained messages
        (flightd clearing an acknowledged result or a purged job) and undecodable ones are skipped."""
        while True:
            topic, payload = await queue.get()
            job_id = self.ground.topics.job_id_of(topic)
            if job_id is None or not payload:
                continue
            try:
                message = decode(payload, kind).message
            except WireError as exc:
                log.warning("undecodable %s on %s: %s", kind.__name__, topic, exc)
                continue
            yield job_id, message

    async def _states(self, queue: asyncio.Queue[tuple[str, bytes]]) -> None:
        async for job_id, event in self._job_messages(queue, JobStateEvent):
            now = self.clock.now()
            if event.state.terminal and event.state is not JobState.DONE:
                self.ledger.failed(job_id, now, f"{event.state.value}: {event.reason or 'no reason'}")
            else:
                self.ledger.acknowledged(job_id, now)
            if event.state is not JobState.QUEUED:
                self._prepared.pop(job_id, None)

    async def _results(self, queue: asyncio.Queue[tuple[str, bytes]]) -> None:
        async for job_id, result in self._job_messages(queue, JobResult):
            now = self.clock.now()
            delivery = self.ledger.result(job_id, now, (result.finished_utc, result.attempt))
            if delivery is Delivery.SECOND_RUN:
                log.error("job %s: a second, different result: it ran twice", job_id)
            self._prepared.pop(job_id, None)
            last_ack = self._acked_at.get(job_id)
            if delivery is Delivery.FIRST or (
                last_ack is not None and self.plan.contact_s_between(last_ack, now) >= self.resend_contact_s
            ):
                self._acked_at[job_id] = now
                try:
                    await self.ground.send_command(AckResult(job_id=job_id))
                except GroundError as exc:
                    log.warning("acknowledging %s: %s", job_id, exc)
