"""Two-node thermal model: compute board and radiator, joined by a conductance G (physics.md).

    C_b dT_b/dt = Q_b - G (T_b - T_r)
    C_r dT_r/dt = Q_r + G (T_b - T_r) + Q_env - eps sigma A (T_r^4 - T_sink^4)
    Q_env = alpha (S_eff + albedo * f) A_abs + eps q_IR A

Q_b is the compute board's electrical power, Q_r every other dissipated electrical watt (bus loads,
battery losses): every electrical watt ends up as heat. S_eff = f * S is the sunlight (f the
illumination fraction), ``albedo_w_m2`` and ``earth_ir_w_m2`` already include the radiator's view
factor to Earth; albedo only counts in sunlight. T_sink is deep space (about 3 K) when the Earth's
infrared is given explicitly, or an effective sink (e.g. 250 K, physics.md) with q_IR = 0.

Integration: linearised implicit (backward) Euler on the 2x2 system, sub-stepped to at most
``max_substep_s``: unconditionally stable, and its fixed point is the exact steady state.
Temperatures are K inside, °C at the interface.
"""

from __future__ import annotations

from dataclasses import dataclass

from hil.plant.constants import SIGMA_W_M2_K4, ZERO_C_K


@dataclass(frozen=True)
class ThermalParams:
    """Heat capacities J/K, conductance W/K, areas m^2, flux W/m^2, temperatures K / °C.

    Defaults: silicate white paint alpha/eps 0.12/0.90 (physics.md)."""

    board_capacity_j_k: float = 900.0
    radiator_capacity_j_k: float = 4500.0
    conductance_w_k: float = 3.0
    radiator_area_m2: float = 0.5
    emissivity: float = 0.90
    absorptivity: float = 0.12
    absorbing_area_m2: float = 0.05
    albedo_w_m2: float = 0.0
    earth_ir_w_m2: float = 0.0
    sink_k: float = 3.0
    initial_board_c: float = 20.0
    initial_radiator_c: float = 20.0
    max_substep_s: float = 20.0

    def radiative_conductance_w_k(self, radiator_c: float, emissivity: float | None = None) -> float:
        """d(rejected W)/dT at ``radiator_c``: 4 eps sigma A T^3, W/K (for a linearised model)."""
        eps = self.emissivity if emissivity is None else emissivity
        t = radiator_c + ZERO_C_K
        return 4.0 * eps * SIGMA_W_M2_K4 * self.radiator_area_m2 * t**3


class ThermalModel:
    """State ``board_k``/``radiator_k`` and the last step's ``rejected_w`` (radiated to the sink, W, at
    the end of the step) and ``env_w`` (environmental heat absorbed, W). ``emissivity`` and
    ``absorptivity`` may be changed (radiator degradation faults)."""

    def __init__(self, params: ThermalParams) -> None:
        self.params = params
        self.board_k = params.initial_board_c + ZERO_C_K
        self.radiator_k = params.initial_radiator_c + ZERO_C_K
        self.emissivity = params.emissivity
        self.absorptivity = params.absorptivity
        self.rejected_w = 0.0
        self.env_w = 0.0

    @property
    def board_c(self) -> float:
        return self.board_k - ZERO_C_K

    @property
    def radiator_c(self) -> float:
        return self.radiator_k - ZERO_C_K

    def env_heat_w(self, fraction: float, sun_w_m2: float) -> float:
        """Environmental heat absorbed by the radiator, W."""
        p = self.params
        solar = self.absorptivity * (sun_w_m2 + p.albedo_w_m2 * fraction) * p.absorbing_area_m2
        return solar + self.emissivity * p.earth_ir_w_m2 * p.radiator_area_m2

    def step(self, board_w: float, radiator_w: float, fraction: float, sun_w_m2: float, dt_s: float) -> None:
        """Advance ``dt_s`` with ``board_w`` into the board, ``radiator_w`` (internal) into the radiator."""
        p = self.params
        env = self.env_heat_w(fraction, sun_w_m2)
        q_r = radiator_w + env
        g = p.conductance_w_k
        cb = p.board_capacity_j_k
        cr = p.radiator_capacity_j_k
        k = self.emissivity * SIGMA_W_M2_K4 * p.radiator_area_m2
        ts4 = p.sink_k**4
        n = max(1, int(dt_s / p.max_substep_s + 0.999999))
        h = dt_s / n
        tb = self.board_k
        tr = self.radiator_k
        a11 = 1.0 + h * g / cb
        a12 = -h * g / cb
        a21 = -h * g / cr
        for _ in range(n):
            tr3 = tr * tr * tr
            fb = h * (board_w - g * (tb - tr)) / cb
            fr = h * (q_r + g * (tb - tr) - k * (tr3 * tr - ts4)) / cr
            a22 = 1.0 + h * (g + 4.0 * k * tr3) / cr
            det = a11 * a22 - a12 * a21
            tb += (fb * a22 - a12 * fr) / det
            tr += (a11 * fr - a21 * fb) / det
        self.board_k = tb
        self.radiator_k = tr
        self.env_w = env
        self.rejected_w = k * (tr**4 - ts4)
