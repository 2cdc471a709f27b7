"""Offline optimum: the most compute a perfectly informed planner gets without breaking a limit.

A linear program over a time grid of ``dt_s`` (default 60 s) with the scenario known in advance
(solar power, bus load, eclipses, environmental heat), solved with HiGHS (scipy.optimize.linprog).

Variables per step t = 0..N-1: busy cores ``c_t`` in [0, n_cores] (the work), battery charge power
``ch_t`` >= 0 and discharge power ``dis_t`` >= 0 at the terminals (W), solar power shunted ``sp_t``
in [0, S_t]; per grid edge t = 0..N: stored energy ``E_t`` (Wh), board and radiator temperatures
``Tb_t``, ``Tr_t`` (°C). Maximise sum_t c_t dt subject to

    power      S_t - sp_t + dis_t = B_t + P_idle + w c_t + ch_t
    battery    E_{t+1} = E_t + (eta_c ch_t - dis_t / eta_d) dt / 3600,   E_min <= E_t <= E_max
               ch_t <= P_charge_max,  ch_t <= cv_intercept - cv_slope E_t   (the charger's constant-
               voltage phase: the charge power tapers as the open-circuit voltage nears the maximum)
    board      C_b (Tb_{t+1} - Tb_t) / dt = P_idle + w c_t - G (Tb_{t+1} - Tr_{t+1})
    radiator   C_r (Tr_{t+1} - Tr_t) / dt = Q_r,t + G (Tb_{t+1} - Tr_{t+1}) + Q_env,t
                                            - [R(Tref_t) + R'(Tref_t) (Tr_{t+1} - Tref_t)]
               Tb_t <= board ceiling - margin,   Tr_t <= radiator ceiling - margin
    workload   q_{t+1} <= q_t + a_t - c_t dt,  q_t >= 0   (backlog q in core-s, arrivals a_t; only
               when ``work_arrival_core_s`` is given: work cannot be done before it arrives)
(backward Euler, as the plant's thermal integrator). Radiation R(T) = eps sigma A (T^4 - T_sink^4)
is linearised around a reference trajectory Tref; R is convex, so the tangent under-estimates the
heat rejected and the LP's temperatures are upper bounds of the true ones for the same power
(conservative). The reference is refined by sequential linear programming: solve, re-simulate the
radiator along the plan, re-linearise (``iterations`` times). Q_r,t: the electrical watts
dissipated on the radiator node (bus loads, and battery losses approximated as
``battery_loss_fraction`` of the battery's terminal power) as the plant does.

The plan is validated by the caller (hil/governor_sim.py) by replaying ``busy_cores`` through the
real, non-linear plant models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import linprog

SIGMA_W_M2_K4 = 5.670374e-8
"""Stefan-Boltzmann constant (physics.md)."""
ZERO_C_K = 273.15

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int_]


@dataclass(frozen=True)
class PlanInputs:
    """Everything the planner knows. Arrays have one value per step (length N); W, Wh, °C, J/K, W/K."""

    dt_s: float
    solar_w: FloatArray
    bus_w: FloatArray
    env_w: FloatArray
    energy0_wh: float
    energy_min_wh: float
    energy_max_wh: float
    charge_w_max: float
    eta_charge: float
    eta_discharge: float
    idle_w: float
    w_per_core: float
    n_cores: float
    board_capacity_j_k: float
    radiator_capacity_j_k: float
    conductance_w_k: float
    radiator_k4_w_k4: float | FloatArray  # emissivity * sigma * area per step (or constant), W/K^4
    sink_k: float
    board0_c: float
    radiator0_c: float
    board_max_c: float
    radiator_max_c: float
    radiator_heat_from_bus: float = 1.0
    battery_loss_fraction: float = 0.03
    cv_intercept_w: float = float("inf")
    cv_slope_w_per_wh: float = 0.0
    work_arrival_core_s: FloatArray | None = None

    @property
    def n(self) -> int:
        return len(self.solar_w)


@dataclass(frozen=True)
class Plan:
    """The optimal plan: ``busy_cores`` per step, predicted ``energy_wh``/``board_c``/``radiator_c``
    per grid edge, ``core_s`` total work (core-seconds), ``status`` of the solver, ``solve_s``."""

    dt_s: float
    busy_cores: FloatArray
    energy_wh: FloatArray
    board_c: FloatArray
    radiator_c: FloatArray
    core_s: float
    status: str
    solve_s: float
    iterations: int

    def busy_cores_at(self, t_s: float) -> float:
        i = int(t_s // self.dt_s)
        if i < 0 or i >= len(self.busy_cores):
            return 0.0
        return float(self.busy_cores[i])


class _Triplets:
    """COO triplets of a sparse constraint matrix."""

    def __init__(self) -> None:
        self.rows: list[IntArray] = []
        self.cols: list[IntArray] = []
        self.vals: list[FloatArray] = []

    def add(self, r: IntArray, c: IntArray, v: FloatArray | float) -> None:
        self.rows.append(r)
        self.cols.append(c)
        self.vals.append(np.broadcast_to(np.asarray(v, dtype=np.float64), r.shape).astype(np.float64))

    def matrix(self, shape: tuple[int, int]) -> sp.csr_matrix:
        return sp.csr_matrix(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))), shape=shape)


def _simulate_radiator(inp: PlanInputs, busy: FloatArray) -> FloatArray:
    """Non-linear two-node backward-Euler simulation of the temperatures (°C) for a plan, radiator only."""
    n = inp.n
    tb = inp.board0_c + ZERO_C_K
    tr = inp.radiator0_c + ZERO_C_K
    out = np.empty(n + 1)
    out[0] = inp.radiator0_c
    g, cb, cr = inp.conductance_w_k, inp.board_capacity_j_k, inp.radiator_capacity_j_k
    k4 = np.broadcast_to(np.asarray(inp.radiator_k4_w_k4, dtype=np.float64), (n,))
    ts4 = inp.sink_k**4
    sub = max(1, int(np.ceil(inp.dt_s / 20.0)))
    h = inp.dt_s / sub
    for t in range(n):
        k = float(k4[t])
        pb = inp.idle_w + inp.w_per_core * busy[t]
        net = inp.solar_w[t] - inp.bus_w[t] - pb
        qr = (inp.radiator_heat_from_bus * inp.bus_w[t] + inp.env_w[t]
              + inp.battery_loss_fraction * abs(net))
        for _ in range(sub):
            a11, a12, a21 = 1 + h * g / cb, -h * g / cb, -h * g / cr
            tr3 = tr**3
            a22 = 1 + h * (g + 4 * k * tr3) / cr
            fb = h * (pb - g * (tb - tr)) / cb
            fr = h * (qr + g * (tb - tr) - k * (tr3 * tr - ts4)) / cr
            det = a11 * a22 - a12 * a21
            tb, tr = tb + (fb * a22 - a12 * fr) / det, tr + (a11 * fr - a21 * fb) / det
        out[t + 1] = tr - ZERO_C_K
    return out


def solve(inp: PlanInputs, iterations: int = 3) -> Plan:
    """Solve the LP (sequentially re-linearised ``iterations`` times); raises RuntimeError if infeasible."""
    t0 = time.perf_counter()
    n, dt = inp.n, inp.dt_s
    dth = dt / 3600.0
    # variable layout
    ic, ich, idis, isp = 0, n, 2 * n, 3 * n
    ie, itb, itr, iq = 4 * n, 5 * n + 1, 6 * n + 2, 7 * n + 3
    with_work = inp.work_arrival_core_s is not None
    nv = 8 * n + 4 if with_work else 7 * n + 3
    cost = np.zeros(nv)
    cost[ic:ic + n] = -dt
    cost[idis:idis + n] = 1e-4 * dt  # discourage pointless simultaneous charge/discharge
    lo = np.full(nv, -np.inf)
    hi = np.full(nv, np.inf)
    lo[ic:ic + n], hi[ic:ic + n] = 0.0, inp.n_cores
    lo[ich:ich + n], hi[ich:ich + n] = 0.0, inp.charge_w_max
    lo[idis:idis + n] = 0.0
    lo[isp:isp + n], hi[isp:isp + n] = 0.0, np.maximum(inp.solar_w, 0.0)
    lo[ie:ie + n + 1], hi[ie:ie + n + 1] = inp.energy_min_wh, inp.energy_max_wh
    e0 = min(max(inp.energy0_wh, inp.energy_min_wh), inp.energy_max_wh)
    lo[ie], hi[ie] = e0, e0
    hi[itb + 1:itb + n + 1] = inp.board_max_c
    hi[itr + 1:itr + n + 1] = inp.radiator_max_c
    lo[itb], hi[itb] = inp.board0_c, inp.board0_c
    lo[itr], hi[itr] = inp.radiator0_c, inp.radiator0_c
    tw = np.arange(n)
    wt = _Triplets()
    ub_parts: list[FloatArray] = []
    n_ub = 0
    if np.isfinite(inp.cv_intercept_w):  # ch_t + slope E_t <= intercept
        wt.add(tw, ich + tw, 1.0)
        wt.add(tw, ie + tw, inp.cv_slope_w_per_wh)
        ub_parts.append(np.full(n, inp.cv_intercept_w))
        n_ub += n
    if with_work:
        assert inp.work_arrival_core_s is not None
        lo[iq:iq + n + 1] = 0.0
        lo[iq], hi[iq] = 0.0, 0.0
        wt.add(n_ub + tw, iq + tw + 1, 1.0)
        wt.add(n_ub + tw, iq + tw, -1.0)
        wt.add(n_ub + tw, ic + tw, dt)
        ub_parts.append(np.asarray(inp.work_arrival_core_s, dtype=np.float64))
        n_ub += n
    a_ub = wt.matrix((n_ub, nv)) if n_ub else None
    b_ub = np.concatenate(ub_parts) if n_ub else None
    # thermal ceilings the initial state already breaks cannot hold at once: relax the first steps
    tb_relax = max(0.0, inp.board0_c - inp.board_max_c)
    tr_relax = max(0.0, inp.radiator0_c - inp.radiator_max_c)
    if tb_relax > 0 or tr_relax > 0:
        hi[itb + 1:itb + n + 1] = np.maximum(hi[itb + 1:itb + n + 1], inp.board0_c)
        hi[itr + 1:itr + n + 1] = np.maximum(hi[itr + 1:itr + n + 1], inp.radiator0_c)

    t = np.arange(n)
    g, cb, cr = inp.conductance_w_k, inp.board_capacity_j_k, inp.radiator_capacity_j_k
    busy_ref = np.full(n, inp.n_cores / 2.0)
    result_x: FloatArray | None = None
    status = "not solved"
    it = 0
    for it in range(1, iterations + 1):
        tref = _simulate_radiator(inp, busy_ref)[1:] + ZERO_C_K
        k4 = np.broadcast_to(np.asarray(inp.radiator_k4_w_k4, dtype=np.float64), (n,))
        k_lin = 4.0 * k4 * tref**3
        rad_ref = k4 * (tref**4 - inp.sink_k**4)
        trip = _Triplets()
        add = trip.add
        r0 = t  # power balance: w c + ch + sp - dis = S - B - idle
        add(r0, ic + t, inp.w_per_core)
        add(r0, ich + t, 1.0)
        add(r0, isp + t, 1.0)
        add(r0, idis + t, -1.0)
        b = np.zeros(4 * n)
        b[0:n] = inp.solar_w - inp.bus_w - inp.idle_w
        r1 = n + t  # energy: E_{t+1} - E_t - eta_c dth ch + dth/eta_d dis = 0
        add(r1, ie + t + 1, 1.0)
        add(r1, ie + t, -1.0)
        add(r1, ich + t, -inp.eta_charge * dth)
        add(r1, idis + t, dth / inp.eta_discharge)
        r2 = 2 * n + t  # board: (cb/dt + g) Tb' - cb/dt Tb - g Tr' - w c = idle
        add(r2, itb + t + 1, cb / dt + g)
        add(r2, itb + t, -cb / dt)
        add(r2, itr + t + 1, -g)
        add(r2, ic + t, -inp.w_per_core)
        b[2 * n:3 * n] = inp.idle_w
        r3 = 3 * n + t  # radiator: (cr/dt + g + k) Tr' - cr/dt Tr - g Tb' = Qr + Qenv - R(Tref) + k (Tref - 273.15)
        add(r3, itr + t + 1, cr / dt + g + k_lin)
        add(r3, itr + t, -cr / dt)
        add(r3, itb + t + 1, -g)
        add(r3, ich + t, -inp.battery_loss_fraction)
        add(r3, idis + t, -inp.battery_loss_fraction)
        b[3 * n:4 * n] = (inp.radiator_heat_from_bus * inp.bus_w + inp.env_w - rad_ref
                          + k_lin * (tref - ZERO_C_K))
        a_eq = trip.matrix((4 * n, nv))
        res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b, bounds=np.stack([lo, hi], axis=1), method="highs")
        status = str(res.message)
        if res.status != 0:
            raise RuntimeError(f"optimum LP failed at iteration {it}: {res.message}")
        result_x = np.asarray(res.x, dtype=np.float64)
        busy_ref = result_x[ic:ic + n]
    assert result_x is not None
    x = result_x
    busy = np.clip(x[ic:ic + n], 0.0, inp.n_cores)
    return Plan(
        dt_s=dt,
        busy_cores=busy,
        energy_wh=x[ie:ie + n + 1],
        board_c=x[itb:itb + n + 1],
        radiator_c=x[itr:itr + n + 1],
        core_s=float(busy.sum() * dt),
        status=status,
        solve_s=time.perf_counter() - t0,
        iterations=it,
    )
