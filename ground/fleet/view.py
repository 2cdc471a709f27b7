"""The fleet as the ground dispatcher sees it: each satellite's retained status turned into the arrays
of :mod:`ground.fleet.dispatch` (pure: statuses and the time in, arrays out).

Per satellite s, for a job of ``model`` at ``priority`` (docs/fleet.md, "The real fleet"):

- eligible: its status is ``online``, younger than ``stale_heartbeats`` heartbeats, not SAFE, carries
  an outlook and lists ``model`` among its active models, and s is not excluded (the satellite a job
  is being re-routed away from); otherwise :attr:`FleetView.reasons` says why not;
- ``r_now`` = ``outlook.busy_cores``; ``r_orbit`` = ``outlook.orbit_busy_cores`` (0 while unknown);
- ``tau`` = ``outlook.phase_left_s / outlook.mission_rate`` minus the status's age (wall seconds: the
  phase is counted in mission seconds, which run ``mission_rate`` times faster under a plant
  simulator; +inf without a governor);
- work = the work queued there at priority >= the job's + the running remainder (the status) + the
  jobs this dispatcher sent there that the status does not count yet (:class:`PendingJob`) + the job's
  own work, ``outlook.job_core_s[model]`` (the satellite's cost model);
- delay 0: the ground uplinks to each satellite directly (no inter-satellite hops).

**Stale figures** (docs/fleet.md, "Stale figures"). Every routed-by figure but one is refreshed at each
heartbeat whatever the routing does (the governor's allowance, the phase, the queue); the job's cost
``job_core_s[model]`` is refreshed only by the jobs the routing sends there. A satellite whose cost
was measured high under a passing load would get no job and so no new measurement, for ever. So the
estimate is *stale* when no run has refreshed it for ``STALE_COST_HEARTBEATS`` heartbeats (its
``outlook.job_cost_age_s[model]`` plus the status's age; a model never measured there is stale too),
and a satellite that is **idle** (nothing queued, running, or sent by this dispatcher and not yet
counted), **has budget** (``busy_cores`` > 0) and holds a stale estimate above the fleet's smallest
*fresh* one for the model is a *probe candidate*: it is ranked with that fresh figure (the fleet's
best evidence of what the job costs on the same kind of board). :func:`route_job` uses the probe
figure only where the satellite meets the job's deadline by its own (stale) figure too, so a probe
never costs a deadline the prediction would keep. The probe's run refreshes the estimate (the
onboard cost model weighs a run after a long gap more: flight/governor/costs.py); at most one probe
is outstanding per satellite (a probe makes it busy), one per stale period.

Times are the ground's UTC seconds; the job goes where :func:`route_job` predicts the earliest finish.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from ground.fleet.dispatch import BoolArray, FloatArray, ahead_by_priority, choose_satellite, predicted_finish_s
from link.messages import Mode, Status

STALE_HEARTBEATS = 3.0
"""A status older than this many of its heartbeat periods is not routed by (a crashed flightd's
will may never be published on a cluster: docs/fleet.md, "What a client must do")."""
STALE_COST_HEARTBEATS = 10.0
"""A job-cost estimate no run has refreshed for this many heartbeat periods is stale (module
docstring): 20 s at flightd's default 2 s heartbeat, 5 s under ``hil fleet`` (0.5 s): long enough
that a satellite between two jobs of a steady stream is not probed, short against a run."""


@dataclass(frozen=True)
class PendingJob:
    """A job this dispatcher sent to a satellite and that its status may not count yet: ``priority``,
    ``core_s`` (the satellite's estimate when it was routed) and ``acked_utc``, the time of the
    satellite's ``queued`` acknowledgement (None until it came). A status stamped after the
    acknowledgement counts the job itself."""

    priority: int
    core_s: float
    acked_utc: float | None = None

    def counted_by(self, status: Status) -> bool:
        return self.acked_utc is not None and status.at_utc is not None and status.at_utc >= self.acked_utc


@dataclass(frozen=True)
class FleetView:
    """Per-satellite arrays (in the order of ``sats``) for one job; ``reasons`` for the ineligible.
    ``idle``: eligible with nothing ahead of the job and busy cores allowed now; ``probe_work_core_s``:
    the work with a probe candidate's stale cost replaced by the fleet's smallest fresh one (equal to
    ``work_core_s`` elsewhere); ``probes``: why each probe candidate is one."""

    sats: tuple[str, ...]
    eligible: BoolArray
    work_core_s: FloatArray
    r_now: FloatArray
    tau_s: FloatArray
    r_orbit: FloatArray
    reasons: dict[str, str] = field(default_factory=dict)
    idle: BoolArray | None = None
    probe_work_core_s: FloatArray | None = None
    probes: dict[str, str] = field(default_factory=dict)


def status_age_s(status: Status, now_utc: float) -> float:
    """Seconds since ``status`` was published (inf without a time)."""
    return now_utc - status.at_utc if status.at_utc is not None else math.inf


def fresh(status: Status, now_utc: float, stale_heartbeats: float = STALE_HEARTBEATS) -> bool:
    """Whether ``status`` is younger than ``stale_heartbeats`` of its heartbeat periods (2 s if unsaid)."""
    return status_age_s(status, now_utc) <= stale_heartbeats * (status.heartbeat_s or 2.0)


def cost_age_s(status: Status, model: str, now_utc: float) -> float:
    """Wall seconds since ``status``'s satellite last measured ``model`` (inf: never, or no outlook)."""
    o = status.outlook
    age = None if o is None else o.job_cost_age_s.get(model)
    return math.inf if age is None else age + max(0.0, status_age_s(status, now_utc))


def cost_stale(status: Status, model: str, now_utc: float, stale_heartbeats: float = STALE_COST_HEARTBEATS) -> bool:
    """Whether ``status``'s estimate of ``model`` is stale (module docstring, "Stale figures")."""
    return cost_age_s(status, model, now_utc) > stale_heartbeats * (status.heartbeat_s or 2.0)


def _ineligible(status: Status | None, now_utc: float, model: str, stale_heartbeats: float) -> str | None:
    if status is None:
        return "no status"
    if status.state != "online":
        return "offline"
    if not fresh(status, now_utc, stale_heartbeats):
        return f"status {status_age_s(status, now_utc):.1f} s old"
    if status.mode is Mode.SAFE:
        return "SAFE"
    if status.outlook is None:
        return "no outlook in its status"
    if model not in status.outlook.job_core_s:
        return f"model {model} not active onboard"
    return None


def fleet_view(
    statuses: Mapping[str, Status | None],
    now_utc: float,
    model: str,
    priority: int,
    pending: Mapping[str, Collection[PendingJob]] | None = None,
    exclude: Collection[str] = (),
    stale_heartbeats: float = STALE_HEARTBEATS,
    stale_cost_heartbeats: float = STALE_COST_HEARTBEATS,
) -> FleetView:
    """The fleet for a job of ``model`` at ``priority`` at ``now_utc`` (see the module docstring)."""
    sats = tuple(statuses)
    n = len(sats)
    eligible = np.zeros(n, dtype=bool)
    work, r_now, tau, r_orbit = np.zeros(n), np.zeros(n), np.full(n, math.inf), np.zeros(n)
    idle, stale, cost = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(n)
    reasons: dict[str, str] = {}
    for i, sat in enumerate(sats):
        status = statuses[sat]
        why = "re-routed away" if sat in exclude else _ineligible(status, now_utc, model, stale_heartbeats)
        if why is not None:
            reasons[sat] = why
            continue
        assert status is not None and status.outlook is not None and status.at_utc is not None
        o = status.outlook
        age = max(0.0, now_utc - status.at_utc)
        unseen = sum(p.core_s for p in (pending or {}).get(sat, ())
                     if p.priority >= priority and not p.counted_by(status))
        ahead = float(ahead_by_priority(o.committed_core_s)[priority]) + o.running_core_s + unseen
        eligible[i] = True
        cost[i] = o.job_core_s[model]
        work[i] = ahead + cost[i]
        idle[i] = ahead <= 0.0 and not status.running and o.busy_cores > 0.0
        stale[i] = cost_stale(status, model, now_utc, stale_cost_heartbeats)
        r_now[i] = o.busy_cores
        r_orbit[i] = o.orbit_busy_cores or 0.0
        if o.phase_left_s is not None:
            tau[i] = max(0.0, o.phase_left_s / o.mission_rate - age)
    probe_work, probes = work.copy(), {}
    fresh_costs = cost[eligible & ~stale]
    if len(fresh_costs):
        best = float(fresh_costs.min())
        for i in np.flatnonzero(eligible & idle & stale & (cost > best)).tolist():
            st = statuses[sats[i]]
            assert st is not None
            probe_work[i] = work[i] - cost[i] + best
            age = cost_age_s(st, model, now_utc)
            probes[sats[i]] = (f"probe: idle, its {model} cost {cost[i]:.3g} core-s "
                               + ("never measured" if math.isinf(age) else f"{age:.0f} s old")
                               + f", ranked at the fleet's fresh {best:.3g}")
    return FleetView(sats, eligible, work, r_now, tau, r_orbit, reasons, idle, probe_work, probes)


@dataclass(frozen=True)
class Route:
    """Where a job goes (``sat``, None when no satellite is eligible) and the predicted finish (UTC s)
    on each eligible satellite (a probe candidate's at the probe figure); ``reasons`` for the others;
    ``probes``: the probe candidates ranked at the fleet's fresh cost, and why (:class:`FleetView`);
    ``passed_over``: the satellites that were idle with at least the chosen one's busy cores while
    the job was sent to one with work ahead of it (what starvation looks like from the ground)."""

    sat: str | None
    finish_utc: dict[str, float]
    reasons: dict[str, str]
    probes: dict[str, str] = field(default_factory=dict)
    passed_over: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the choice, every eligible satellite's predicted finish, why the others are out."""
        if not self.finish_utc:
            return "no eligible satellite"
        best = min(self.finish_utc.values())
        parts = [(f"{sat} +{t - best:.3g} s" if math.isfinite(t) else f"{sat} never")
                 + (f" ({self.probes[sat]})" if sat in self.probes else "")
                 for sat, t in sorted(self.finish_utc.items(), key=lambda kv: kv[1])]
        parts += [f"{sat}: {why}" for sat, why in sorted(self.reasons.items())]
        return "; ".join(parts)


def route_job(view: FleetView, now_utc: float, deadline_utc: float | None) -> Route:
    """The satellite to send the job to (:func:`ground.fleet.dispatch.choose_satellite`), a probe
    candidate ranked at its probe figure where its own figure meets the deadline too (module docstring)."""
    deadline = math.inf if deadline_utc is None else deadline_utc
    finish = predicted_finish_s(now_utc, view.work_core_s, view.r_now, view.tau_s, view.r_orbit, 0.0)
    probes: dict[str, str] = {}
    if view.probe_work_core_s is not None and view.probes:
        probe = predicted_finish_s(now_utc, view.probe_work_core_s, view.r_now, view.tau_s, view.r_orbit, 0.0)
        use = (probe < finish) & (finish <= deadline)
        finish = np.where(use, probe, finish)
        probes = {sat: why for sat, why in view.probes.items() if use[view.sats.index(sat)]}
    chosen = choose_satellite(finish, deadline, view.eligible)
    finish_utc = {sat: float(finish[i]) for i, sat in enumerate(view.sats) if view.eligible[i]}
    passed: tuple[str, ...] = ()
    if chosen is not None and view.idle is not None and not view.idle[chosen]:
        passed = tuple(sat for i, sat in enumerate(view.sats)
                       if i != chosen and view.idle[i] and view.r_now[i] >= view.r_now[chosen])
    return Route(None if chosen is None else view.sats[chosen], finish_utc, view.reasons, probes, passed)
