"""The fleet's ground dispatcher: routes each job by the satellites' retained status and follows it to
its result, re-routing it once if its satellite goes SAFE before running it (docs/fleet.md, "The real
fleet").

    async with FleetDispatcher("mqtt://127.0.0.1:1883", ["sat1", "sat2", "sat3"]) as fleet:
        outcome = await fleet.run("tile-fp32", {"tiles": x}, priority=8, deadline_s=60)
        print(outcome.sat, outcome.fetched.outputs)

The I/O shell around pure code: :mod:`ground.fleet.view` (statuses -> arrays) and
:mod:`ground.fleet.dispatch` (where the job finishes earliest: the arithmetic of the fleet simulator's
orbitd policy) decide where a job goes, :mod:`ground.fleet.reroute` when it may move. One
:class:`ground.client.GroundClient` per satellite (one connection each, job states and results
followed with wildcards: ``track_all_jobs``), so a broker list of a NATS cluster fails over as for one
satellite.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import aiomqtt

from ground.client import (
    Arrays,
    CommandFailed,
    FetchedResult,
    GroundClient,
    GroundError,
    JobFailed,
    NotAcknowledged,
    SubmittedJob,
    new_id,
)
from ground.fleet.reroute import JobCourse, Step
from ground.fleet.view import PendingJob, Route, fleet_view, fresh, route_job
from link.codec import WireError, decode
from link.messages import CancelJob, JobState, JobStateEvent, Mode, Status
from link.topics import LIVE_ROOT
from link.transport import BrokerList, make_client

CANCEL_TIMEOUT_S = 5.0
"""How long a re-route waits for the first satellite's reply to the cancel (no reply: no re-route)."""


@dataclass
class FleetJob:
    """A job in the fleet: what was asked, where it went first and why, and its course since."""

    job_id: str
    model: str
    inputs: Arrays
    priority: int
    deadline_utc: float | None
    route: Route
    course: JobCourse
    submitted: SubmittedJob | None = None


@dataclass(frozen=True)
class FleetOutcome:
    """A job's result: ``sat`` ran it; ``sats`` it was sent to, in order (two after a re-route)."""

    job_id: str
    sat: str
    sats: tuple[str, ...]
    fetched: FetchedResult
    route: Route

    @property
    def rerouted(self) -> bool:
        return len(self.sats) > 1


@dataclass(frozen=True)
class Reroute:
    """A re-route: ``job_id`` moved ``from_sat`` -> ``to_sat`` at ``at_utc``."""

    job_id: str
    from_sat: str
    to_sat: str
    at_utc: float


@dataclass
class FleetStats:
    """What the dispatcher did: jobs routed to each satellite (and of those, while its status said it
    was in eclipse, and as a probe of a stale cost estimate), jobs done on each, the re-routes, and how
    often each satellite was passed over: idle with budget while a job went to a satellite with work
    ahead of it (:attr:`ground.fleet.view.Route.passed_over`)."""

    routed: Counter[str] = field(default_factory=Counter)
    probes: Counter[str] = field(default_factory=Counter)
    passed_over: Counter[str] = field(default_factory=Counter)
    routed_in_eclipse: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    reroutes: list[Reroute] = field(default_factory=list)


class FleetDispatcher:
    """Routes jobs over the satellites ``sats`` on ``broker`` (a URL or a cluster's broker list); use as
    ``async with``. ``timeout_s``: default time to wait for a result; ``poll_s``: how often a job
    without news is checked for a SAFE satellite."""

    def __init__(self, broker: str, sats: Sequence[str], *, timeout_s: float = 60.0, poll_s: float = 0.25,
                 key_id: str | None = None, key: bytes | None = None) -> None:
        if not sats:
            raise GroundError("a fleet needs at least one satellite")
        self.broker = broker
        self.sats = tuple(dict.fromkeys(sats))
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.clients = {sat: GroundClient(broker, sat, key_id=key_id, key=key, timeout_s=timeout_s)
                        for sat in self.sats}
        self.stats = FleetStats()
        self._pending: dict[str, dict[str, PendingJob]] = {sat: {} for sat in self.sats}
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        """Connect one client per satellite (concurrently), follow all their jobs, and wait up to 2 s
        for each retained status."""
        async def enter(client: GroundClient) -> GroundClient:
            await client.__aenter__()
            return client

        entered = await asyncio.gather(*(enter(c) for c in self.clients.values()), return_exceptions=True)
        for client in entered:
            if isinstance(client, GroundClient):
                self._stack.push_async_exit(client.__aexit__)
        failed = [e for e in entered if isinstance(e, BaseException)]
        if failed:
            await self._stack.aclose()
            raise GroundError(f"fleet dispatcher: {failed[0]}")
        await asyncio.gather(*(c.track_all_jobs() for c in self.clients.values()))
        await asyncio.gather(*(c.advertised_status(wait_s=2.0) for c in self.clients.values()))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()

    # ---------------------------------------------------------------------------------- routing

    def statuses(self) -> dict[str, Status | None]:
        """Each satellite's latest retained status (None before one arrived)."""
        return {sat: client.latest_status for sat, client in self.clients.items()}

    def route(self, model: str, priority: int, deadline_utc: float | None, exclude: Sequence[str] = ()) -> Route:
        """Where a job would go now (:func:`ground.fleet.view.route_job`)."""
        now = time.time()
        pending = {sat: list(jobs.values()) for sat, jobs in self._pending.items()}
        view = fleet_view(self.statuses(), now, model, priority, pending, exclude)
        return route_job(view, now, deadline_utc)

    async def _route_when_eligible(self, job_id: str, model: str, priority: int, deadline_utc: float | None,
                                   exclude: Sequence[str], timeout_s: float) -> Route:
        """A route as soon as a satellite is eligible; GroundError after ``timeout_s`` naming why none is."""
        deadline = time.monotonic() + timeout_s
        while True:
            route = self.route(model, priority, deadline_utc, exclude)
            if route.sat is not None:
                return route
            if time.monotonic() > deadline:
                raise GroundError(f"job {job_id}: no satellite can take it ({route.describe()})")
            await asyncio.sleep(self.poll_s)

    # ----------------------------------------------------------------------------------- submit

    async def submit(self, model: str, inputs: Arrays, *, priority: int = 5, deadline_s: float | None = None,
                     job_id: str | None = None, wait_eligible_s: float = 10.0) -> FleetJob:
        """Route a job and submit it to the chosen satellite (its acknowledgement awaited); waits up to
        ``wait_eligible_s`` for an eligible satellite. ``deadline_s`` is relative to now. Raises
        :class:`ground.client.JobRejected` with the satellite's reason, GroundError otherwise."""
        job_id = job_id or new_id("job-")
        deadline_utc = None if deadline_s is None else time.time() + deadline_s
        route = await self._route_when_eligible(job_id, model, priority, deadline_utc, (), wait_eligible_s)
        assert route.sat is not None
        self.stats.passed_over.update(route.passed_over)
        if route.sat in route.probes:
            self.stats.probes[route.sat] += 1
        job = FleetJob(job_id, model, inputs, priority, deadline_utc, route, JobCourse(job_id, route.sat))
        await self._submit_to(job, route.sat)
        return job

    async def _submit_to(self, job: FleetJob, sat: str) -> None:
        status = self.clients[sat].latest_status
        core_s = status.outlook.job_core_s.get(job.model, 0.0) if status and status.outlook else 0.0
        self._pending[sat][job.job_id] = PendingJob(job.priority, core_s)
        self.stats.routed[sat] += 1
        if status is not None and status.outlook is not None and status.outlook.in_eclipse:
            self.stats.routed_in_eclipse[sat] += 1
        deadline_s = None if job.deadline_utc is None else job.deadline_utc - time.time()
        try:
            job.submitted = await self.clients[sat].submit(job.model, job.inputs, job_id=job.job_id,
                                                           priority=job.priority, deadline_s=deadline_s)
        except GroundError:
            self._pending[sat].pop(job.job_id, None)
            raise
        self._observe(sat, job, job.submitted.ack)

    def _observe(self, sat: str, job: FleetJob, event: JobStateEvent) -> Step:
        """A state of ``job`` from ``sat``: the pending ledger and the job's course."""
        pending = self._pending[sat]
        if event.state is JobState.QUEUED and job.job_id in pending:
            pending[job.job_id] = PendingJob(job.priority, pending[job.job_id].core_s, event.at_utc)
        elif event.state is not JobState.QUEUED:
            pending.pop(job.job_id, None)  # running or over: the status's running remainder, or nothing
        return job.course.on_state(sat, event.state)

    # ----------------------------------------------------------------------------------- follow

    async def follow(self, job: FleetJob, timeout_s: float | None = None, ack: bool = True) -> FleetOutcome:
        """Follow ``job`` to its result (acknowledged with ``ack``), re-routing it once if its satellite
        goes SAFE before running it (:mod:`ground.fleet.reroute`). JobFailed if it ends otherwise,
        GroundError after ``timeout_s``."""
        wait_s = timeout_s or self.timeout_s
        deadline = time.monotonic() + wait_s
        course = job.course
        while True:
            if time.monotonic() > deadline:
                raise GroundError(f"job {job.job_id}: no result from {course.sat} within {wait_s:.0f} s")
            client = self.clients[course.sat]
            update = await client.next_update(job.job_id, self.poll_s)
            if isinstance(update, FetchedResult):
                return await self._done(job, update, ack)
            if isinstance(update, JobStateEvent):
                step = self._observe(course.sat, job, update)
                if step is Step.RESUBMIT:
                    await self._resubmit(job, max(0.0, deadline - time.monotonic()))
                elif course.failed:
                    await client.forget(job.job_id)
                    self._pending[course.sat].pop(job.job_id, None)
                    raise JobFailed(update)
                continue
            status = client.latest_status
            if (status is None or status.mode is not Mode.SAFE or not fresh(status, time.time())
                    or course.state is not JobState.QUEUED):
                continue
            target = self.route(job.model, job.priority, job.deadline_utc, exclude=[course.sat])
            if course.on_safe(target.sat is not None) is not Step.CANCEL:
                continue
            if course.on_cancel_reply(await self._cancel(client, job.job_id)) is Step.RESUBMIT:
                await self._resubmit(job, max(0.0, deadline - time.monotonic()))

    async def _cancel(self, client: GroundClient, job_id: str) -> str | None:
        """The ``state`` of the satellite's reply to a cancel; None when refused or unanswered."""
        try:
            data = await client.command(CancelJob(job_id=job_id), timeout_s=CANCEL_TIMEOUT_S)
        except (CommandFailed, GroundError):
            return None
        state = data.get("state") if isinstance(data, dict) else None
        return state if isinstance(state, str) else None

    async def _resubmit(self, job: FleetJob, timeout_s: float) -> None:
        """The first satellite confirmed it will never run the job: send it to the best other one."""
        old = job.course.sat
        await self.clients[old].forget(job.job_id)
        self._pending[old].pop(job.job_id, None)
        route = await self._route_when_eligible(job.job_id, job.model, job.priority, job.deadline_utc, [old],
                                                timeout_s)
        assert route.sat is not None
        job.course.moved(route.sat)
        self.stats.reroutes.append(Reroute(job.job_id, old, route.sat, time.time()))
        with contextlib.suppress(NotAcknowledged):  # it may still arrive there: followed there, never sent on
            await self._submit_to(job, route.sat)

    async def _done(self, job: FleetJob, fetched: FetchedResult, ack: bool) -> FleetOutcome:
        sat = job.course.sat
        client = self.clients[sat]
        await client.forget(job.job_id)
        self._pending[sat].pop(job.job_id, None)
        self.stats.done[sat] += 1
        if ack:
            with contextlib.suppress(GroundError):  # unacknowledged, the result stays retained onboard
                await client.ack(job.job_id)
        return FleetOutcome(job.job_id, sat, tuple(job.course.sats), fetched, job.route)

    async def run(self, model: str, inputs: Arrays, *, priority: int = 5, deadline_s: float | None = None,
                  job_id: str | None = None, timeout_s: float | None = None) -> FleetOutcome:
        """:meth:`submit`, then :meth:`follow` to the (acknowledged) result."""
        job = await self.submit(model, inputs, priority=priority, deadline_s=deadline_s, job_id=job_id)
        return await self.follow(job, timeout_s)


async def _collect_statuses(client: aiomqtt.Client, found: dict[str, Status]) -> None:
    async for message in client.messages:
        payload = message.payload
        if isinstance(payload, bytes | bytearray) and payload:
            with contextlib.suppress(WireError):
                status = decode(bytes(payload), Status).message
                found[status.sat] = status


async def read_statuses(broker: str, wait_s: float = 1.0, root: str = LIVE_ROOT) -> dict[str, Status]:
    """Every satellite's retained status on ``broker`` (the first node of a list that accepts),
    collected for ``wait_s``; undecodable ones are skipped. GroundError when no node accepts."""
    brokers = BrokerList.parse(broker)
    failures: list[str] = []
    for attempt in range(len(brokers)):
        url = brokers.node(attempt)
        found: dict[str, Status] = {}
        try:
            async with make_client(url, identifier=new_id("ground-fleet-")) as client:
                await client.subscribe(f"{root}/+/status", qos=1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_collect_statuses(client, found), wait_s)
            return found
        except aiomqtt.MqttError as exc:
            failures.append(f"{url}: {exc}")
    raise GroundError(f"cannot reach broker {'; '.join(failures)}")
