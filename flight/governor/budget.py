"""Predictive compute power budget (W): energy reserve for the next eclipse, thermal headroom.

Energy (all energies Wh, powers W, times s; E_min = (soc_floor + soc_margin) * capacity):

* in eclipse, ``t_left`` seconds before eclipse exit, spend the energy above E_min evenly:
      P_board <= (E - E_min) * 3600 * eta_d / t_left - P_bus
* in sunlight, ``tau`` seconds before the next eclipse of length ``T_e``, arrive at the eclipse with
      E_need = E_min + (P_bus + P_idle) * T_e / (3600 * eta_d)
  (enough to cross it with the board idle), spending everything else now. With
  ``net = (E_need - E) * 3600 / tau`` the average battery power needed (W):
      P_board <= P_solar - P_bus - net / eta_c      if net >= 0 (must charge)
      P_board <= P_solar - P_bus - net * eta_d      if net < 0  (may discharge the excess)
  Using solar power directly is worth 1/(eta_c*eta_d) times more than routing it through the
  battery, so the policy computes in sunlight first; whatever the board cannot absorb charges the
  battery and is spent in the next eclipse by the first rule.

Thermal: :class:`ThermalPredictor`, a two-node model linearised around the current radiator
temperature, predicts board and radiator temperatures over a horizon for a constant board power P
(exactly affine in P: T(t) = T_free(t) + P * T_unit(t)), and the budget is the largest P keeping
both under their ceilings minus a margin. A disturbance estimate per node (W), integrated from the
one-step prediction error, absorbs model error such as a degraded radiator (offset-free MPC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from flight.governor.config import ThermalModelConfig

FloatOrArray = TypeVar("FloatOrArray", float, npt.NDArray[np.float64])

SIGMA_W_M2_K4 = 5.670374e-8
"""Stefan-Boltzmann constant (physics.md, "Thermal")."""
ZERO_C_K = 273.15


@dataclass(frozen=True)
class OrbitPhase:
    """Where we are in the orbit: ``period_s``, ``eclipse_fraction``, ``t_orbit_s`` since the last
    eclipse exit (sunlight comes first, then the eclipse), and where the estimate came from."""

    period_s: float
    eclipse_fraction: float
    t_orbit_s: float
    source: str

    @property
    def sunlit_s(self) -> float:
        return (1.0 - self.eclipse_fraction) * self.period_s

    @property
    def eclipse_s(self) -> float:
        return self.eclipse_fraction * self.period_s

    def in_eclipse(self, dt_s: float = 0.0) -> bool:
        """Whether the orbit model puts us in eclipse ``dt_s`` seconds from now."""
        if self.eclipse_fraction <= 0.0:
            return False
        t = (self.t_orbit_s + dt_s) % self.period_s
        return t >= self.sunlit_s

    def time_to_eclipse_s(self) -> float:
        """Seconds to the next eclipse entry (0 while in eclipse)."""
        t = self.t_orbit_s % self.period_s
        return max(0.0, self.sunlit_s - t)

    def eclipse_left_s(self) -> float:
        """Seconds to the next eclipse exit while in eclipse (0 in sunlight)."""
        t = self.t_orbit_s % self.period_s
        return max(0.0, self.period_s - t) if t >= self.sunlit_s else 0.0


def phase_left_s(t_orbit_s: FloatOrArray, period_s: FloatOrArray, eclipse_fraction: FloatOrArray) -> FloatOrArray:
    """Seconds to the end of the current phase (eclipse entry in sunlight, eclipse exit in eclipse) at
    ``t_orbit_s`` since the last eclipse exit, sunlight first (:class:`OrbitPhase`'s convention); with
    no eclipse, to the end of the orbit. Floats or numpy arrays (the fleet simulator's satellites)."""
    t = np.mod(t_orbit_s, period_s)
    sun_s = (1.0 - eclipse_fraction) * period_s
    left = np.where(t < sun_s, sun_s - t, period_s - t)
    return left if isinstance(left, np.ndarray) and left.ndim else float(left)  # type: ignore[return-value]


def sustainable_busy_cores(
    peak_solar_w: float,
    bus_w: float,
    idle_w: float,
    w_per_core: float,
    n_cores: float,
    eta: float,
    eclipse_fraction: FloatOrArray,
    period_s: FloatOrArray,
) -> FloatOrArray:
    """Orbit-average busy cores an orbit's energy sustains: full compute in sunlight as far as the array
    (``peak_solar_w``, W) carries it above the bus and the idle board, plus what the sunlit surplus,
    through the battery at ``eta`` = eta_c * eta_d, carries through the eclipse::

        c_sun = clip((P_peak - P_bus - P_idle) / w_core, 0, n)
        c_ecl = clip(((P_peak - P_bus - P_idle - w_core c_sun) T_sun eta - (P_bus + P_idle) T_ecl)
                     / (w_core T_ecl), 0, n)                     (n when there is no eclipse)
        rate  = (c_sun T_sun + c_ecl T_ecl) / T

    The fleet dispatcher's ``r_orbit`` (:mod:`ground.fleet.dispatch`): the simulator computes it for
    every satellite from the design, flightd's governor for its own satellite (``Outlook``). Floats or
    numpy arrays for ``eclipse_fraction`` and ``period_s``."""
    t_sun, t_ecl = (1.0 - eclipse_fraction) * period_s, eclipse_fraction * period_s
    c_sun = np.clip((peak_solar_w - bus_w - idle_w) / w_per_core, 0.0, n_cores)
    surplus = peak_solar_w - bus_w - idle_w - w_per_core * c_sun
    with np.errstate(divide="ignore", invalid="ignore"):
        c_ecl = np.where(np.asarray(t_ecl) > 0, (surplus * t_sun * eta - (bus_w + idle_w) * t_ecl)
                         / (w_per_core * t_ecl), n_cores)
    c_ecl = np.clip(c_ecl, 0.0, n_cores)
    rate = (c_sun * t_sun + c_ecl * t_ecl) / period_s
    return rate if isinstance(rate, np.ndarray) and rate.ndim else float(rate)  # type: ignore[return-value]


class OrbitEstimator:
    """Learns the orbit phase from the ``sunlit`` flag history (eclipse entry/exit times) when the
    ``orbit`` channel is absent: period = time between eclipse exits, eclipse fraction = eclipse
    length / period."""

    def __init__(self, period_s: float, eclipse_fraction: float) -> None:
        self.period_s = period_s
        self.eclipse_fraction = eclipse_fraction
        self.last_sunlit: bool | None = None
        self.last_exit_s: float | None = None
        self.last_entry_s: float | None = None
        self.learned = False

    def observe(self, t_s: float, sunlit: bool) -> None:
        if self.last_sunlit is not None and sunlit != self.last_sunlit:
            if sunlit:  # eclipse exit
                if self.last_exit_s is not None and t_s - self.last_exit_s > 60.0:
                    self.period_s = t_s - self.last_exit_s
                    self.learned = True
                if self.last_entry_s is not None and self.period_s > 0:
                    self.eclipse_fraction = min(0.95, max(0.0, (t_s - self.last_entry_s) / self.period_s))
                self.last_exit_s = t_s
            else:
                self.last_entry_s = t_s
        self.last_sunlit = sunlit

    def phase(self, now_s: float) -> OrbitPhase:
        if self.last_exit_s is not None:
            return OrbitPhase(self.period_s, self.eclipse_fraction, now_s - self.last_exit_s,
                              "sunlit history" if self.learned else "sunlit history + fallback period")
        if self.last_entry_s is not None:
            t = self.period_s * (1.0 - self.eclipse_fraction) + (now_s - self.last_entry_s)
            return OrbitPhase(self.period_s, self.eclipse_fraction, t, "sunlit history + fallback period")
        # No transition seen: assume the worst case, an eclipse starting now if not sunlit.
        if self.last_sunlit is False:
            return OrbitPhase(self.period_s, self.eclipse_fraction,
                              self.period_s * (1.0 - self.eclipse_fraction), "fallback (in eclipse)")
        return OrbitPhase(self.period_s, self.eclipse_fraction,
                          self.period_s * (1.0 - self.eclipse_fraction) - 1.0, "fallback (eclipse imminent)")


@dataclass(frozen=True)
class EnergyState:
    """Battery and bus now: stored ``energy_wh`` of ``capacity_wh``, solar and bus power (W)."""

    energy_wh: float
    capacity_wh: float
    solar_w: float
    bus_w: float
    sunlit: bool


def energy_budget_w(
    state: EnergyState,
    orbit: OrbitPhase,
    e_min_wh: float,
    idle_w: float,
    eta_c: float,
    eta_d: float,
    min_horizon_s: float = 1.0,
) -> tuple[float, str]:
    """Largest board power (W, idle included) that keeps the eclipse reserve; see the module doc."""
    in_ecl = orbit.in_eclipse() if orbit.eclipse_fraction > 0 else False
    if not state.sunlit or in_ecl:
        t_left = max(orbit.eclipse_left_s(), min_horizon_s) if in_ecl else orbit.eclipse_s
        t_left = max(t_left, min_horizon_s)
        avail_w = (state.energy_wh - e_min_wh) * 3600.0 * eta_d / t_left
        p = avail_w + (state.solar_w if state.sunlit else 0.0) - state.bus_w
        return p, f"eclipse: {state.energy_wh - e_min_wh:.2f} Wh above reserve over {t_left:.0f} s"
    tau = max(orbit.time_to_eclipse_s(), min_horizon_s)
    e_need = e_min_wh + (state.bus_w + idle_w) * orbit.eclipse_s / (3600.0 * eta_d)
    e_need = min(e_need, state.capacity_wh)
    net = (e_need - state.energy_wh) * 3600.0 / tau
    surplus = state.solar_w - state.bus_w
    p = surplus - net / eta_c if net >= 0 else surplus - net * eta_d
    return p, f"sunlit: reserve {e_need:.2f} Wh needed at eclipse entry in {tau:.0f} s"


class ThermalPredictor:
    """Two-node thermal model of the compute board and its radiator (see the module docstring):

        C_b dTb/dt = P_board - G (Tb - Tr) + d_b
        C_r dTr/dt = G (Tb - Tr) + k_bus P_bus + Q_env(sunlit) - eps sigma A (Tr^4 - Ts^4) + d_r

    linearised in Tr around its current value for the prediction. ``d_b``, ``d_r`` (W) are learned.
    """

    def __init__(self, cfg: ThermalModelConfig) -> None:
        self.cfg = cfg
        self.d_b = 0.0
        self.d_r = 0.0
        self._last: tuple[float, float, float, float, float, bool] | None = None  # t, Tb, Tr, P, Pbus, sun

    def _derivs(self, tb: float, tr: float, p: float, p_bus: float, sunlit: bool) -> tuple[float, float]:
        c = self.cfg
        q_env = c.env_sunlit_w if sunlit else c.env_eclipse_w
        rad = c.radiator_emissivity * SIGMA_W_M2_K4 * c.radiator_area_m2 * (
            (tr + ZERO_C_K) ** 4 - (c.sink_c + ZERO_C_K) ** 4)
        flow = c.board_to_radiator_w_k * (tb - tr)
        dtb = (p - flow + self.d_b) / c.board_heat_capacity_j_k
        dtr = (flow + c.bus_heat_to_radiator * p_bus + q_env - rad + self.d_r) / c.radiator_heat_capacity_j_k
        return dtb, dtr

    def observe(self, t_s: float, tb: float, tr: float, board_w: float, bus_w: float, sunlit: bool) -> None:
        """Update the disturbance estimates from the error of the model's prediction since the last call."""
        last = self._last
        self._last = (t_s, tb, tr, board_w, bus_w, sunlit)
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
        g = self.cfg.disturbance_gain
        self.d_b += g * self.cfg.board_heat_capacity_j_k * (tb - pb) / dt
        self.d_r += g * self.cfg.radiator_heat_capacity_j_k * (tr - pr) / dt

    def max_power_w(
        self,
        tb: float,
        tr: float,
        bus_w: float,
        orbit: OrbitPhase,
        board_ceiling_c: float,
        radiator_ceiling_c: float,
    ) -> tuple[float, str]:
        """Largest constant board power (W) keeping predicted temperatures under the ceilings over
        the horizon (affine in P: two linear simulations)."""
        c = self.cfg
        k_lin = 4.0 * c.radiator_emissivity * SIGMA_W_M2_K4 * c.radiator_area_m2 * (tr + ZERO_C_K) ** 3
        rad0 = c.radiator_emissivity * SIGMA_W_M2_K4 * c.radiator_area_m2 * (
            (tr + ZERO_C_K) ** 4 - (c.sink_c + ZERO_C_K) ** 4)
        g, cb, cr = c.board_to_radiator_w_k, c.board_heat_capacity_j_k, c.radiator_heat_capacity_j_k
        stable_h = 0.5 * min(cb, cr) / g  # explicit Euler stays well inside its stability limit
        steps = max(1, int(c.horizon_s / c.step_s), math.ceil(c.horizon_s / stable_h))
        h = c.horizon_s / steps
        # free response (P = 0) and unit response (dT per W), semi-implicit Euler per step
        fb, fr, ub, ur = tb, tr, 0.0, 0.0
        best = math.inf
        binding = "none"
        tr_ref = tr
        for i in range(1, steps + 1):
            sun = not orbit.in_eclipse(i * h - 0.5 * h)
            q_env = c.env_sunlit_w if sun else c.env_eclipse_w
            flow_f = g * (fb - fr)
            rad_f = rad0 + k_lin * (fr - tr_ref)
            nfb = fb + h * (-flow_f + self.d_b) / cb
            nfr = fr + h * (flow_f + c.bus_heat_to_radiator * bus_w + q_env - rad_f + self.d_r) / cr
            flow_u = g * (ub - ur)
            nub = ub + h * (1.0 - flow_u) / cb
            nur = ur + h * (flow_u - k_lin * ur) / cr
            fb, fr, ub, ur = nfb, nfr, nub, nur
            if ub > 1e-12:
                lim = (board_ceiling_c - fb) / ub
                if lim < best:
                    best, binding = lim, f"board {board_ceiling_c:.1f} °C in {i * h:.0f} s"
            if ur > 1e-12:
                lim = (radiator_ceiling_c - fr) / ur
                if lim < best:
                    best, binding = lim, f"radiator {radiator_ceiling_c:.1f} °C in {i * h:.0f} s"
        return best, f"thermal: binding {binding}"
