"""An upper bound on a small fleet's goodput: a linear program in the manner of hil/optimum.py.

Perfect knowledge of the scenario (every satellite's sunlight, the whole job stream), a time grid of
``dt_s`` (default 300 s), solved with HiGHS (scipy.optimize.linprog). Variables:

* per satellite s and step t: busy cores ``c[s,t]`` in [0, cores], battery charge ``ch`` in
  [0, P_charge_max] and discharge ``dis`` >= 0 (W, terminals), shunted solar ``sp`` in [0, S[s,t]];
  per grid edge: stored energy ``E[s,t]`` in [E_min, E_max] (Wh), ``E[s,0]`` = the initial energy;
* per job j and step t in its window: ``x[j,t]`` >= 0, the core-seconds of job j done in step t.

Maximise sum_j (value_j / work_j) sum_t x[j,t] subject to

    power     w c[s,t] + ch[s,t] + sp[s,t] - dis[s,t] = S[s,t] - B[s,t] - P_idle
    battery   E[s,t+1] = E[s,t] + (eta_c ch[s,t] - dis[s,t] / eta_d) dt / 3600
              ch[s,t] + cv_slope E[s,t] <= cv_intercept          (the charger's constant-voltage taper)
    capacity  sum_j x[j,t] <= dt sum_s c[s,t]                     (the fleet's busy core-seconds)
    job       sum_t x[j,t] <= work_j,   x[j,t] <= cores * overlap(step t, [arrival_j, deadline_j])

The battery parameters (efficiencies with resistive losses, E_min at the floor + 0.5 %, E_max, the
charge limit and the CV taper) are those hil/governor_sim.py's ``plan_inputs_for`` gives the
single-satellite LP. It is a relaxation of the fleet simulator, hence an upper bound (up to the
battery's linearisation, as hil/optimum.py's caveat says): a job may be split across satellites
and steps and credited in proportion to the work done, ISL transfers are free and instant, and the
thermal model is left out (thermal ceilings never bind in these runs: hil/fleet/sim.py reports the
maximum temperatures, tens of °C below the ceilings). The x bound keeps one job to one executor's
cores at a time, as in the simulator.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import linprog

from hil.fleet.plant import source_powers_w
from hil.fleet.sim import FleetScenario
from hil.governor_sim import plan_inputs_for
from hil.plant.plant import Plant

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FleetBound:
    """The LP's optimum: ``goodput`` (value, fractional credit), ``work_core_s`` done, ``job_core_s``
    (jobs,) the work done on each job, ``busy_cores`` (N, T) and ``energy_wh`` (N, T+1) per satellite,
    solver ``status``, ``solve_s``, sizes."""

    goodput: float
    work_core_s: float
    job_core_s: FloatArray
    busy_cores: FloatArray
    energy_wh: FloatArray
    status: str
    solve_s: float
    variables: int
    constraints: int


def _windows(arrival: FloatArray, deadline: FloatArray, t0: float, dt: float, steps: int,
             cores: float) -> tuple[IntArray, IntArray, FloatArray]:
    """(job index, step index, upper bound of x) for every step overlapping each job's window."""
    end = t0 + steps * dt
    first = np.clip(np.floor((arrival - t0) / dt).astype(np.int64), 0, steps)
    last = np.clip(np.ceil((np.minimum(deadline, end) - t0) / dt).astype(np.int64), 0, steps)  # exclusive
    count = np.maximum(last - first, 0)
    job = np.repeat(np.arange(len(arrival)), count)
    offs = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    step = first[job] + offs
    lo = np.maximum(t0 + step * dt, arrival[job])
    hi = np.minimum(t0 + (step + 1) * dt, deadline[job])
    return job, step, cores * np.maximum(hi - lo, 0.0)


def fleet_upper_bound(scenario: FleetScenario, dt_s: float = 300.0) -> FleetBound:
    """Solve the LP (module docstring) for ``scenario``; ``dt_s`` must be a multiple of its step.
    Raises RuntimeError when HiGHS fails, ValueError on a bad grid."""
    t_start = time.perf_counter()
    block = round(dt_s / scenario.dt_s)
    if block < 1 or abs(block * scenario.dt_s - dt_s) > 1e-9:
        raise ValueError(f"LP step {dt_s} s must be a multiple of the simulation step {scenario.dt_s} s")
    n_sat = scenario.n
    steps = scenario.steps // block
    ill = scenario.illumination
    cut = steps * block

    def blocks(a: FloatArray) -> FloatArray:
        mean: FloatArray = a[:cut].reshape(steps, block, n_sat).mean(axis=1).T  # (N, T)
        return mean

    solar, bus = source_powers_w(scenario.plant, blocks(ill.fraction), blocks(ill.sun_w_m2),
                                 blocks(ill.zenith_sun_w_m2))
    plant = Plant(scenario.plant)
    pin = plan_inputs_for(plant, dt_s, dt_s, scenario.limits)
    cores = float(pin.n_cores)
    jobs = scenario.jobs
    jx, tx, xmax = _windows(jobs.arrival_s, jobs.deadline_s, scenario.t0_s, dt_s, steps, cores)
    n_x = len(jx)
    # variable layout: per satellite blocks of c, ch, dis, sp (N*T each), E (N*(T+1)), then x
    nt = n_sat * steps
    ic, ich, idis, isp = 0, nt, 2 * nt, 3 * nt
    ie = 4 * nt
    ix = ie + n_sat * (steps + 1)
    nv = ix + n_x
    sat = np.repeat(np.arange(n_sat), steps)
    tt = np.tile(np.arange(steps), n_sat)
    flat = sat * steps + tt
    e_idx = sat * (steps + 1) + tt
    lo = np.zeros(nv)
    hi = np.full(nv, np.inf)
    hi[ic:ic + nt] = cores
    hi[ich:ich + nt] = pin.charge_w_max
    hi[isp:isp + nt] = np.maximum(solar.ravel(), 0.0)
    lo[ie:ix], hi[ie:ix] = pin.energy_min_wh, pin.energy_max_wh
    e0 = min(max(pin.energy0_wh, pin.energy_min_wh), pin.energy_max_wh)
    starts = ie + np.arange(n_sat) * (steps + 1)
    lo[starts], hi[starts] = e0, e0
    hi[ix:] = xmax
    cost = np.zeros(nv)
    cost[ix:] = -(jobs.value / jobs.core_s)[jx]
    cost[idis:idis + nt] = 1e-6 * dt_s  # no pointless simultaneous charge and discharge
    dth = dt_s / 3600.0
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []

    def add(r: IntArray, c: IntArray, v: FloatArray | float) -> None:
        rows.append(r)
        cols.append(c)
        vals.append(np.broadcast_to(np.asarray(v, dtype=np.float64), r.shape).astype(np.float64))

    # equalities: power balance (nt rows), energy (nt rows)
    r_pow = flat
    add(r_pow, ic + flat, pin.w_per_core)
    add(r_pow, ich + flat, 1.0)
    add(r_pow, isp + flat, 1.0)
    add(r_pow, idis + flat, -1.0)
    r_en = nt + flat
    add(r_en, ie + e_idx + 1, 1.0)
    add(r_en, ie + e_idx, -1.0)
    add(r_en, ich + flat, -pin.eta_charge * dth)
    add(r_en, idis + flat, dth / pin.eta_discharge)
    b_eq = np.concatenate([(solar - bus).ravel() - pin.idle_w, np.zeros(nt)])
    a_eq = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(2 * nt, nv))
    rows, cols, vals = [], [], []
    # inequalities: capacity per step (T rows), job work (jobs rows), CV taper (nt rows)
    add(tx, ix + np.arange(n_x), 1.0)
    add(tt, ic + flat, -dt_s)
    add(steps + jx, ix + np.arange(n_x), 1.0)
    r_cv = steps + len(jobs) + flat
    n_ub = steps + len(jobs)
    b_parts = [np.zeros(steps), jobs.core_s.copy()]
    if math.isfinite(pin.cv_intercept_w):
        add(r_cv, ich + flat, 1.0)
        add(r_cv, ie + e_idx, pin.cv_slope_w_per_wh)
        b_parts.append(np.full(nt, pin.cv_intercept_w))
        n_ub += nt
    a_ub = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_ub, nv))
    res = linprog(cost, A_ub=a_ub, b_ub=np.concatenate(b_parts), A_eq=a_eq, b_eq=b_eq,
                  bounds=np.stack([lo, hi], axis=1), method="highs")
    if res.status != 0:
        raise RuntimeError(f"fleet LP failed: {res.message}")
    x = np.asarray(res.x, dtype=np.float64)
    return FleetBound(
        goodput=float((jobs.value / jobs.core_s)[jx] @ x[ix:]),
        work_core_s=float(x[ix:].sum()),
        job_core_s=np.bincount(jx, weights=x[ix:], minlength=len(jobs)).astype(np.float64),
        busy_cores=x[ic:ic + nt].reshape(n_sat, steps),
        energy_wh=x[ie:ix].reshape(n_sat, steps + 1),
        status=str(res.message),
        solve_s=time.perf_counter() - t_start,
        variables=nv,
        constraints=2 * nt + n_ub,
    )
