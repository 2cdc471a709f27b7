"""orbitd's governor budget for N satellites at once: the vectorised form of flight/governor's budget.

Running :class:`flight.governor.governor.Governor` per satellite costs about 170 µs per update on
this machine (its thermal prediction is a 60-step Python loop): 143 satellites x 72 h at a 30 s
control step would take about 6 min of the 2-minute allowance. So this module re-expresses, on
arrays of N satellites, exactly the part of ``Governor.update`` that sets the compute allocation:

* ``energy_budget_w`` (flight/governor/budget.py): the eclipse-reserve budget from the orbit phase,
  with E_min = (soc_floor + soc_margin) * capacity, capacity learned as battery_wh / soc (soc > 0.2);
* ``ThermalPredictor.max_power_w`` and ``ThermalPredictor.observe`` (the two-node model linearised
  about the radiator temperature, its free and unit responses over the horizon, and the disturbance
  estimates d_b, d_r integrated from the one-step prediction error);
* the battery-voltage derating below ``battery_v_floor + battery_v_margin``;
* ``p = clip(min(full power, energy, thermal, voltage), idle, full)``, busy cores
  ``(p - idle) / w_per_core`` and ``allocation_for``'s cut to 0 below ``min_busy_cores``.

What is not re-expressed: the mode machine's debounce and dwell times and stale-telemetry SAFE (the
fleet simulator's telemetry is never late); here a satellite whose state is beyond any hard limit
gets 0 cores (SAFE) for that step. tests/test_fleet_governor.py runs the real Governor and this class
side by side on one plant's telemetry and requires the same budget and busy cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

from flight.governor.budget import SIGMA_W_M2_K4, ZERO_C_K
from flight.governor.config import GovernorConfig
from flight.governor.limits import BATTERY_V_FLOOR, BOARD_CEILING, RADIATOR_CEILING, SOC_FLOOR, LimitConfig
from link.telemetry import BATTERY_V, BOARD_C, RADIATOR_C, SOC

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def failing(limit: LimitConfig, values: FloatArray) -> BoolArray:
    """The limit's own watchpoint (``LimitConfig.failing``) on an array of satellites' values: its
    comparison is elementwise, so the one definition of each limit serves the fleet too."""
    result: BoolArray = np.asarray(limit.failing(cast(float, values)), dtype=np.bool_)
    return result


@dataclass(frozen=True)
class FleetTelemetry:
    """What the governor reads from each satellite (arrays (N,)): the ``power`` channel (soc, battery_v,
    battery_wh, solar_w, bus_w, compute_w, sunlit), the ``thermal`` channel (board_c, radiator_c) and
    the ``orbit`` channel (period_s, eclipse_fraction, t_orbit_s since the last eclipse exit)."""

    t_s: float
    soc: FloatArray
    battery_v: FloatArray
    battery_wh: FloatArray
    solar_w: FloatArray
    bus_w: FloatArray
    compute_w: FloatArray
    sunlit: BoolArray
    board_c: FloatArray
    radiator_c: FloatArray
    period_s: FloatArray
    eclipse_fraction: FloatArray
    t_orbit_s: FloatArray


@dataclass(frozen=True)
class OrbitPhases:
    """:class:`flight.governor.budget.OrbitPhase` for N satellites."""

    period_s: FloatArray
    eclipse_fraction: FloatArray
    t_orbit_s: FloatArray

    @property
    def sunlit_s(self) -> FloatArray:
        return (1.0 - self.eclipse_fraction) * self.period_s

    @property
    def eclipse_s(self) -> FloatArray:
        return self.eclipse_fraction * self.period_s

    def in_eclipse(self, dt_s: float = 0.0) -> BoolArray:
        t = np.mod(self.t_orbit_s + dt_s, self.period_s)
        return (self.eclipse_fraction > 0.0) & (t >= self.sunlit_s)

    def time_to_eclipse_s(self) -> FloatArray:
        return np.maximum(0.0, self.sunlit_s - np.mod(self.t_orbit_s, self.period_s))

    def eclipse_left_s(self) -> FloatArray:
        t = np.mod(self.t_orbit_s, self.period_s)
        return np.where(t >= self.sunlit_s, np.maximum(0.0, self.period_s - t), 0.0)


@dataclass(frozen=True)
class FleetDecision:
    """Per satellite: ``budget_w`` (board W, idle included, after the clamp), ``busy_cores`` allowed,
    ``energy_w`` / ``thermal_w`` (the two predictive budgets before the clamp), ``safe``; and for each
    extra reserve tier (see FleetGovernor) ``tier_budget_w`` / ``tier_busy_cores`` (tiers, N)."""

    budget_w: FloatArray
    busy_cores: FloatArray
    energy_w: FloatArray
    thermal_w: FloatArray
    safe: BoolArray
    tier_budget_w: FloatArray
    tier_busy_cores: FloatArray


class FleetGovernor:
    """The governor's budget for ``n`` satellites sharing one :class:`GovernorConfig`.

    ``reserve_tiers``: extra SoC margins (0..1, above ``soc_margin``) for which the energy budget is
    computed too (E_min = (floor + soc_margin + tier) * capacity), e.g. a contingency reserve that only
    some work may spend; the decision's ``budget_w``/``busy_cores`` are the governor's own (no tier)."""

    def __init__(self, config: GovernorConfig, n: int, reserve_tiers: tuple[float, ...] = ()) -> None:
        self.config = config
        self.n = n
        self.reserve_tiers = reserve_tiers
        self.capacity_wh = np.full(n, config.battery.capacity_wh)
        self.d_b = np.zeros(n)
        self.d_r = np.zeros(n)
        self._last: tuple[float, FloatArray, FloatArray, FloatArray, FloatArray, BoolArray] | None = None
        lim = {x.name: x for x in config.limits}
        self.soc_floor = lim[SOC_FLOOR].threshold if SOC_FLOOR in lim else 0.30
        self.v_floor = lim[BATTERY_V_FLOOR].threshold if BATTERY_V_FLOOR in lim else None
        self.board_ceiling = lim[BOARD_CEILING].threshold if BOARD_CEILING in lim else math.inf
        self.radiator_ceiling = lim[RADIATOR_CEILING].threshold if RADIATOR_CEILING in lim else math.inf
        self.hard_limits = [x for x in config.limits if x.severity == "hard"]
        self.last: FleetDecision | None = None

    # ----------------------------------------------------------------------------------- thermal

    def _derivs(self, tb: FloatArray, tr: FloatArray, p: FloatArray, p_bus: FloatArray,
                sunlit: BoolArray) -> tuple[FloatArray, FloatArray]:
        c = self.config.thermal
        q_env = np.where(sunlit, c.env_sunlit_w, c.env_eclipse_w)
        rad = c.radiator_emissivity * SIGMA_W_M2_K4 * c.radiator_area_m2 * (
            (tr + ZERO_C_K) ** 4 - (c.sink_c + ZERO_C_K) ** 4)
        flow = c.board_to_radiator_w_k * (tb - tr)
        dtb = (p - flow + self.d_b) / c.board_heat_capacity_j_k
        dtr = (flow + c.bus_heat_to_radiator * p_bus + q_env - rad + self.d_r) / c.radiator_heat_capacity_j_k
        return dtb, dtr

    def observe_thermal(self, t_s: float, tb: FloatArray, tr: FloatArray, board_w: FloatArray,
                        bus_w: FloatArray, sunlit: BoolArray) -> None:
        """ThermalPredictor.observe for N satellites (all sampled at ``t_s``)."""
        last = self._last
        self._last = (t_s, tb.copy(), tr.copy(), board_w.copy(), bus_w.copy(), sunlit.copy())
        if last is None:
            return
        t0, tb0, tr0, p0, pbus0, sun0 = last
        dt = t_s - t0
        if dt <= 0 or dt > 600:
            return
        n = max(1, math.ceil(dt / 10.0))
        h = dt / n
        pb, pr = tb0, tr0
        for _ in range(n):
            db, dr = self._derivs(pb, pr, p0, pbus0, sun0)
            pb, pr = pb + h * db, pr + h * dr
        c = self.config.thermal
        g = c.disturbance_gain
        self.d_b = self.d_b + g * c.board_heat_capacity_j_k * (tb - pb) / dt
        self.d_r = self.d_r + g * c.radiator_heat_capacity_j_k * (tr - pr) / dt

    def thermal_budget_w(self, tb: FloatArray, tr: FloatArray, bus_w: FloatArray, orbit: OrbitPhases) -> FloatArray:
        """ThermalPredictor.max_power_w for N satellites: largest constant board power (W) keeping the
        predicted temperatures ``thermal_margin_c`` under the ceilings over the horizon.

        ThermalPredictor steps x_{i+1} = A x_i + c_i (explicit Euler of the linearised two-node model;
        x = (Tb, Tr), A = [[1 - hG/Cb, hG/Cb], [hG/Cr, 1 - h(G + k)/Cr]], k = 4 eps sigma A Tr^3) for
        the free response (c_i: disturbances, bus heat, environment in sun or eclipse at step i) and the
        unit response (c = (h/Cb, 0)). A has two real eigenvalues l (M = (A - I)/h is similar to a
        symmetric matrix), so in its eigenbasis y_i = l^i (y_0 + sum_{m<=i} l^-m w_m): every step of
        the horizon at once, equal to the loop up to rounding."""
        cfg = self.config
        c = cfg.thermal
        board_ceiling = self.board_ceiling - cfg.thermal_margin_c
        radiator_ceiling = self.radiator_ceiling - cfg.thermal_margin_c
        esa = c.radiator_emissivity * SIGMA_W_M2_K4 * c.radiator_area_m2
        k_lin = 4.0 * esa * (tr + ZERO_C_K) ** 3
        rad0 = esa * ((tr + ZERO_C_K) ** 4 - (c.sink_c + ZERO_C_K) ** 4)
        g, cb, cr = c.board_to_radiator_w_k, c.board_heat_capacity_j_k, c.radiator_heat_capacity_j_k
        stable_h = 0.5 * min(cb, cr) / g  # explicit Euler stays well inside its stability limit
        steps = max(1, int(c.horizon_s / c.step_s), math.ceil(c.horizon_s / stable_h))
        h = c.horizon_s / steps
        a, b, cc = 1.0 - h * g / cb, h * g / cb, h * g / cr
        d = 1.0 - h * (g + k_lin) / cr
        root = np.sqrt((a - d) ** 2 + 4.0 * b * cc)
        l1, l2 = (a + d + root) / 2.0, (a + d - root) / 2.0
        det_v = b * (l2 - l1)

        def to_eig(x1: FloatArray | float, x2: FloatArray | float) -> tuple[FloatArray, FloatArray]:
            return ((l2 - a) * x1 - b * x2) / det_v, (-(l1 - a) * x1 + b * x2) / det_v

        i = np.arange(1, steps + 1, dtype=np.float64)[:, None]
        t_mid = np.mod(orbit.t_orbit_s[None, :] + (i - 0.5) * h, orbit.period_s[None, :])
        eclipse = (orbit.eclipse_fraction[None, :] > 0.0) & (t_mid >= orbit.sunlit_s[None, :])
        q_env = np.where(eclipse, c.env_eclipse_w, c.env_sunlit_w)
        drive = c.bus_heat_to_radiator * bus_w - rad0 + k_lin * tr + self.d_r
        l1p, l2p = l1[None, :] ** i, l2[None, :] ** i
        y1, y2 = to_eig(tb, tr)
        w1, w2 = to_eig(h * self.d_b / cb, h * (drive[None, :] + q_env) / cr)
        f1 = l1p * (y1[None, :] + np.cumsum(w1 / l1p, axis=0))
        f2 = l2p * (y2[None, :] + np.cumsum(w2 / l2p, axis=0))
        u1c, u2c = to_eig(h / cb, 0.0)  # constant input: sum_{m<=i} l^(i-m) = (1 - l^i) / (1 - l)
        u1 = u1c[None, :] * (1.0 - l1p) / (1.0 - l1)[None, :]
        u2 = u2c[None, :] * (1.0 - l2p) / (1.0 - l2)[None, :]
        fb, fr = b * (f1 + f2), (l1 - a) * f1 + (l2 - a) * f2
        ub, ur = b * (u1 + u2), (l1 - a) * u1 + (l2 - a) * u2
        with np.errstate(divide="ignore", invalid="ignore"):
            lim_b = np.where(ub > 1e-12, (board_ceiling - fb) / ub, math.inf)
            lim_r = np.where(ur > 1e-12, (radiator_ceiling - fr) / ur, math.inf)
        best: FloatArray = np.minimum(lim_b.min(axis=0), lim_r.min(axis=0))
        return best

    # ----------------------------------------------------------------------------------- energy

    def energy_budget_w(self, tel: FleetTelemetry, orbit: OrbitPhases, extra_soc: float = 0.0) -> FloatArray:
        """energy_budget_w for N satellites (see flight/governor/budget.py), keeping ``extra_soc`` of
        the capacity above the governor's own reserve."""
        cfg = self.config
        eta_c, eta_d = cfg.battery.charge_efficiency, cfg.battery.discharge_efficiency
        min_h = cfg.telemetry_period_s
        cap = self.capacity_wh
        e_min = (self.soc_floor + cfg.soc_margin + extra_soc) * cap
        energy = tel.battery_wh
        bus = np.maximum(0.0, tel.bus_w)
        in_ecl = orbit.in_eclipse()
        t_left = np.maximum(np.where(in_ecl, np.maximum(orbit.eclipse_left_s(), min_h), orbit.eclipse_s), min_h)
        p_ecl = (energy - e_min) * 3600.0 * eta_d / t_left + np.where(tel.sunlit, tel.solar_w, 0.0) - bus
        tau = np.maximum(orbit.time_to_eclipse_s(), min_h)
        e_need = np.minimum(e_min + (bus + cfg.board.idle_w) * orbit.eclipse_s / (3600.0 * eta_d), cap)
        net = (e_need - energy) * 3600.0 / tau
        surplus = tel.solar_w - bus
        p_sun = np.where(net >= 0.0, surplus - net / eta_c, surplus - net * eta_d)
        return np.where(~tel.sunlit | in_ecl, p_ecl, p_sun)

    # ----------------------------------------------------------------------------------- decide

    def hard_limit_broken(self, tel: FleetTelemetry) -> BoolArray:
        """Satellites whose state is beyond a hard limit now (the fleet's SAFE condition)."""
        values = {SOC: tel.soc, BATTERY_V: tel.battery_v, BOARD_C: tel.board_c, RADIATOR_C: tel.radiator_c}
        bad = np.zeros(self.n, dtype=bool)
        for lim in self.hard_limits:
            v = values.get(lim.key)
            if v is not None:
                bad |= failing(lim, v)
        return bad

    def _allocate(self, p_e: FloatArray, p_t: FloatArray, tel: FleetTelemetry,
                  safe: BoolArray) -> tuple[FloatArray, FloatArray]:
        """(board budget W, busy cores) from the energy and thermal budgets: the voltage derating, the
        clamp to [idle, full], allocation_for's cut below ``min_busy_cores``, SAFE -> idle."""
        cfg, board = self.config, self.config.board
        p = np.minimum(np.minimum(p_e, p_t), board.max_w)
        if self.v_floor is not None and cfg.battery_v_margin > 0:
            frac = (tel.battery_v - self.v_floor) / cfg.battery_v_margin
            p_v = board.idle_w + np.maximum(0.0, frac) * (board.max_w - board.idle_w)
            p = np.where(frac < 1.0, np.minimum(p, p_v), p)
        p = np.clip(p, board.idle_w, board.max_w)
        busy = np.minimum(float(board.n_cores), (p - board.idle_w) / board.w_per_core)
        busy = np.where(busy < cfg.min_busy_cores, 0.0, busy)
        return np.where(safe, board.idle_w, p), np.where(safe, 0.0, busy)

    def update(self, tel: FleetTelemetry) -> FleetDecision:
        """Fold in one telemetry sample of every satellite and decide the allocation (module doc)."""
        ok = tel.soc > 0.2
        self.capacity_wh = np.where(ok, tel.battery_wh / np.where(ok, tel.soc, 1.0), self.capacity_wh)
        self.observe_thermal(tel.t_s, tel.board_c, tel.radiator_c, tel.compute_w, tel.bus_w, tel.sunlit)
        orbit = OrbitPhases(tel.period_s, np.clip(tel.eclipse_fraction, 0.0, 0.95), tel.t_orbit_s)
        p_e = self.energy_budget_w(tel, orbit)
        p_t = self.thermal_budget_w(tel.board_c, tel.radiator_c, tel.bus_w, orbit)
        safe = self.hard_limit_broken(tel)
        p, busy = self._allocate(p_e, p_t, tel, safe)
        tiers = [self._allocate(self.energy_budget_w(tel, orbit, x), p_t, tel, safe) for x in self.reserve_tiers]
        d = FleetDecision(p, busy, p_e, p_t, safe,
                          np.array([t[0] for t in tiers]).reshape(len(tiers), self.n),
                          np.array([t[1] for t in tiers]).reshape(len(tiers), self.n))
        self.last = d
        return d
