"""Where a job finishes earliest: orbitd's fleet routing arithmetic (pure: arrays in, arrays out).

One home for the decision that both the fleet simulator (``hil.fleet.policies.OrbitdPolicy``: its
ground dispatcher and its neighbour offload) and the real fleet's ground dispatcher
(:mod:`ground.fleet.dispatcher`, fed from each satellite's retained ``Status.outlook``) take, so a
figure of ``bench.fleet`` describes the code that routes real jobs. No clock, no I/O, no MQTT.

For a job of ``work`` busy core-seconds on satellite s (docs/fleet.md, "Dispatch policies"):

    finish_s = now + delay_s + T_s(ahead_s + work)
    T_s(x)   = x / r_now                           if x <= r_now * tau
               tau + (x - r_now * tau) / r_orbit   otherwise

``ahead_s``: committed work of priority >= the job's (queued, in transit) plus the running remainder,
core-s; ``r_now``: the busy cores the governor allows now (its budget to the next eclipse, thermal
headroom included); ``tau``: time to the end of the current sunlit or eclipse phase, s; ``r_orbit``:
the orbit-average sustainable busy cores (:func:`flight.governor.budget.sustainable_busy_cores`);
``tau`` may be +inf (no phase known: the current rate holds);
``delay_s``: time for the input to reach s (ISL hops in the simulator, 0 for a direct uplink). A
satellite with no rate at all (``r_now`` or ``r_orbit`` 0 where needed) finishes at +inf.

The job goes to the earliest finish among the satellites predicted to meet its deadline, or to the
earliest finish when none is (:func:`choose_satellite`). All times in one clock's seconds, rates in
busy cores (core-s per s of that clock).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def predicted_finish_s(
    now_s: float,
    work_core_s: npt.ArrayLike,
    r_now: npt.ArrayLike,
    tau_s: npt.ArrayLike,
    r_orbit: npt.ArrayLike,
    delay_s: npt.ArrayLike,
) -> FloatArray:
    """Predicted finish times (s) of ``work_core_s`` (work ahead plus the job's own, core-s) at the
    rates ``r_now`` / ``r_orbit`` (busy cores) with ``tau_s`` of the current phase left and the input
    arriving after ``delay_s``; the arguments broadcast (e.g. jobs x satellites). See the module
    docstring for the formula; +inf where the rate needed is 0."""
    work = np.asarray(work_core_s, dtype=np.float64)
    rate_now = np.asarray(r_now, dtype=np.float64)
    tau = np.asarray(tau_s, dtype=np.float64)
    rate_orbit = np.asarray(r_orbit, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(rate_now > 0, rate_now * tau, 0.0)  # no rate now: nothing done this phase (tau may be inf)
        t_now = np.where(rate_now > 0, work / rate_now, math.inf)
        t_later = tau + np.where(rate_orbit > 0, (work - first) / rate_orbit, math.inf)
    finish: FloatArray = now_s + np.asarray(delay_s, dtype=np.float64) + np.where(work <= first, t_now, t_later)
    return finish


def choose_satellite(finish_s: npt.ArrayLike, deadline_s: float, eligible: npt.ArrayLike | None = None) -> int | None:
    """Index of the satellite with the earliest ``finish_s`` among the ``eligible`` ones (all when None)
    that meet ``deadline_s`` (+inf: no deadline); the earliest eligible finish when none meets it; the
    first on a tie. None when no satellite is eligible."""
    finish = np.asarray(finish_s, dtype=np.float64)
    cand = np.arange(len(finish)) if eligible is None else np.flatnonzero(np.asarray(eligible, dtype=bool))
    if not len(cand):
        return None
    f = finish[cand]
    ok = f <= deadline_s
    if ok.any():
        f = np.where(ok, f, math.inf)
    return int(cand[np.argmin(f)])


def ahead_by_priority(committed_core_s: npt.ArrayLike) -> FloatArray:
    """Work of priority >= p for each p (core-s), from the work queued at each priority
    (``committed_core_s[..., p]``, p = 0..9): a reversed cumulative sum on the last axis."""
    per = np.asarray(committed_core_s, dtype=np.float64)
    out: FloatArray = np.flip(np.cumsum(np.flip(per, axis=-1), axis=-1), axis=-1)
    return out
