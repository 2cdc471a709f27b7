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
    """Per-satellite arrays (in the order of ``sats``) for one job; ``reasons`` for the ineligible."""

    sats: tuple[str, ...]
    eligible: BoolArray
    work_core_s: FloatArray
    r_now: FloatArray
    tau_s: FloatArray
    r_orbit: FloatArray
    reasons: dict[str, str] = field(default_factory=dict)


def status_age_s(status: Status, now_utc: float) -> float:
    """Seconds since ``status`` was published (inf without a time)."""
    return now_utc - status.at_utc if status.at_utc is not None else math.inf


def fresh(status: Status, now_utc: float, stale_heartbeats: float = STALE_HEARTBEATS) -> bool:
    """Whether ``status`` is younger than ``stale_heartbeats`` of its heartbeat periods (2 s if unsaid)."""
    return status_age_s(status, now_utc) <= stale_heartbeats * (status.heartbeat_s or 2.0)


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
) -> FleetView:
    """The fleet for a job of ``model`` at ``priority`` at ``now_utc`` (see the module docstring)."""
    sats = tuple(statuses)
    n = len(sats)
    eligible = np.zeros(n, dtype=bool)
    work, r_now, tau, r_orbit = np.zeros(n), np.zeros(n), np.full(n, math.inf), np.zeros(n)
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
        work[i] = ahead + o.job_core_s[model]
        r_now[i] = o.busy_cores
        r_orbit[i] = o.orbit_busy_cores or 0.0
        if o.phase_left_s is not None:
            tau[i] = max(0.0, o.phase_left_s / o.mission_rate - age)
    return FleetView(sats, eligible, work, r_now, tau, r_orbit, reasons)


@dataclass(frozen=True)
class Route:
    """Where a job goes (``sat``, None when no satellite is eligible) and the predicted finish (UTC s)
    on each eligible satellite; ``reasons`` for the others."""

    sat: str | None
    finish_utc: dict[str, float]
    reasons: dict[str, str]

    def describe(self) -> str:
        """One line: the choice, every eligible satellite's predicted finish, why the others are out."""
        if not self.finish_utc:
            return "no eligible satellite"
        best = min(self.finish_utc.values())
        parts = [f"{sat} +{t - best:.3g} s" if math.isfinite(t) else f"{sat} never"
                 for sat, t in sorted(self.finish_utc.items(), key=lambda kv: kv[1])]
        parts += [f"{sat}: {why}" for sat, why in sorted(self.reasons.items())]
        return "; ".join(parts)


def route_job(view: FleetView, now_utc: float, deadline_utc: float | None) -> Route:
    """The satellite to send the job to (:func:`ground.fleet.dispatch.choose_satellite`)."""
    finish = predicted_finish_s(now_utc, view.work_core_s, view.r_now, view.tau_s, view.r_orbit, 0.0)
    deadline = math.inf if deadline_utc is None else deadline_utc
    chosen = choose_satellite(finish, deadline, view.eligible)
    finish_utc = {sat: float(finish[i]) for i, sat in enumerate(view.sats) if view.eligible[i]}
    return Route(None if chosen is None else view.sats[chosen], finish_utc, view.reasons)
