"""Li-ion battery pack: Thevenin 1-RC equivalent circuit with coulomb counting (physics.md).

    dSOC/dt = -I eta / (3600 Q_Ah)      (I > 0 discharging; eta = eta_charge charging, 1/eta_discharge
                                         discharging)
    dV1/dt  = -V1 / (R1 C1) + I / C1
    V       = OCV(SOC) - I R0 - V1

The RC update is exact for a current held over the step: V1' = V1 a + I R1 (1 - a), a = exp(-dt/tau).
The current is chosen so that the *step-average* terminal power equals the requested power, using
the step-average V1 (= k V1 + (1 - k) I R1, k = tau (1 - a) / dt): an effective source
E = OCV - k V1 behind R = R0 + (1 - k) R1, solved as a quadratic. Limits: charge current, constant
voltage at ``v_cell_max`` (the charger's CV phase: the current tapers as the cells fill), cut-off at
``v_cell_min`` and at SOC 0 (the bus browns out).

Stored energy is the chemical energy E(SOC) = Q_Ah * series * integral_0^SOC OCV_cell(s) ds (Wh).
Per step, every watt is accounted for: terminal power + losses = -dE/dt, with losses
I^2 R0 + I V1_avg + coulombic (OCV |I| (1 - eta_c) charging, OCV I (1/eta_d - 1) discharging).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

NMC_OCV_CELL_V: tuple[float, ...] = (
    3.00, 3.30, 3.42, 3.50, 3.55, 3.59, 3.62, 3.65, 3.67, 3.70, 3.73,
    3.76, 3.80, 3.84, 3.88, 3.93, 3.98, 4.03, 4.08, 4.14, 4.20,
)  # fmt: skip
"""Open-circuit voltage of one NMC cell at SOC = 0, 0.05, ..., 1.0, V: a representative curve for the
3.0-4.2 V NMC cell of physics.md (not a specific datasheet); steep below 10%, flat 30-60%."""


@dataclass(frozen=True)
class BatteryParams:
    """A pack of ``series`` x ``parallel`` cells. Cell values: capacity Ah, R0/R1 ohm, C1 F, voltages V.
    Pack values follow: Q = cap * parallel, R = r * series / parallel, C1 = c1 * parallel / series.
    ``charge_current_limit_a`` is the pack's charge-current limit (A); excess solar power is shunted."""

    series: int = 4
    parallel: int = 1
    cell_capacity_ah: float = 3.0
    cell_r0_ohm: float = 0.040
    cell_r1_ohm: float = 0.020
    cell_c1_f: float = 1500.0
    eta_charge: float = 0.99
    eta_discharge: float = 0.99
    charge_current_limit_a: float = 1.5
    v_cell_max: float = 4.20
    v_cell_min: float = 3.00
    ocv_cell_v: tuple[float, ...] = field(default=NMC_OCV_CELL_V)

    @property
    def capacity_ah(self) -> float:
        return self.cell_capacity_ah * self.parallel

    @property
    def r0_ohm(self) -> float:
        return self.cell_r0_ohm * self.series / self.parallel

    @property
    def r1_ohm(self) -> float:
        return self.cell_r1_ohm * self.series / self.parallel

    @property
    def c1_f(self) -> float:
        return self.cell_c1_f * self.parallel / self.series

    @property
    def tau_s(self) -> float:
        return self.r1_ohm * self.c1_f

    def ocv_v(self, soc: float) -> float:
        """Pack open-circuit voltage at ``soc`` (0..1), V (linear between the table's knots)."""
        table = self.ocv_cell_v
        n = len(table) - 1
        x = min(max(soc, 0.0), 1.0) * n
        i = min(int(x), n - 1)
        return self.series * (table[i] + (table[i + 1] - table[i]) * (x - i))

    def energy_wh(self, soc: float, capacity_factor: float = 1.0) -> float:
        """Chemical energy stored at ``soc``, Wh: Q * series * integral_0^soc OCV_cell (exact for the
        piecewise-linear curve)."""
        table = self.ocv_cell_v
        n = len(table) - 1
        x = min(max(soc, 0.0), 1.0) * n
        i = min(int(x), n - 1)
        whole = self._knot_integrals[i]
        frac = x - i
        part = table[i] * frac + (table[i + 1] - table[i]) * frac * frac / 2.0
        return self.capacity_ah * capacity_factor * self.series * (whole + part) / n

    @cached_property
    def _knot_integrals(self) -> tuple[float, ...]:
        """Sum of the trapezoids of the OCV table up to each knot (V, in units of one knot spacing)."""
        table = self.ocv_cell_v
        out = [0.0]
        for j in range(len(table) - 1):
            out.append(out[-1] + (table[j] + table[j + 1]) / 2.0)
        return tuple(out)

    @property
    def capacity_wh(self) -> float:
        """Chemical energy from SOC 0 to 1, Wh."""
        return self.energy_wh(1.0)


class BatteryModel:
    """State (``soc``, ``v1``) and the last step's outputs (``current_a`` + = discharge, ``voltage_v``
    step-average terminal voltage, ``power_w`` terminal power + = discharge, ``loss_w``, ``ocv_v``).
    ``capacity_factor`` (0..1] scales Q (capacity fade; SOC is kept, so stored energy drops)."""

    def __init__(self, params: BatteryParams, soc: float = 1.0) -> None:
        self.params = params
        self.soc = min(max(soc, 0.0), 1.0)
        self.v1 = 0.0
        self.capacity_factor = 1.0
        self.ocv_v = params.ocv_v(self.soc)
        self.current_a = 0.0
        self.voltage_v = self.ocv_v
        self.power_w = 0.0
        self.loss_w = 0.0
        self._r0 = params.r0_ohm
        self._r1 = params.r1_ohm
        self._tau = params.tau_s
        self._v_max = params.v_cell_max * params.series
        self._v_min = params.v_cell_min * params.series
        self._k_dt = -1.0
        self._a = 1.0
        self._k = 1.0

    @property
    def energy_wh(self) -> float:
        return self.params.energy_wh(self.soc, self.capacity_factor)

    def step(self, power_w: float, dt_s: float) -> float:
        """Exchange ``power_w`` at the terminals for ``dt_s`` (+ discharge, - charge), within limits.
        Returns the power actually exchanged (same sign convention), W."""
        if dt_s != self._k_dt:
            self._k_dt = dt_s
            self._a = math.exp(-dt_s / self._tau)
            self._k = self._tau * (1.0 - self._a) / dt_s
        a = self._a
        k = self._k
        soc = self.soc
        ocv = self.params.ocv_v(soc)
        r1 = self._r1
        e = ocv - k * self.v1
        r = self._r0 + (1.0 - k) * r1
        disc = e * e - 4.0 * r * power_w
        current = (e - math.sqrt(disc)) / (2.0 * r) if disc > 0.0 else e / (2.0 * r)
        if current < 0.0:  # charging: current limit, CV limit, full
            current = max(current, -self.params.charge_current_limit_a, (e - self._v_max) / r)
            if soc >= 1.0 or current > 0.0:
                current = 0.0
        else:  # discharging: voltage cut-off, empty
            current = min(current, (e - self._v_min) / r)
            if soc <= 0.0 or current < 0.0:
                current = 0.0
        v1_avg = k * self.v1 + (1.0 - k) * current * r1
        voltage = ocv - current * self._r0 - v1_avg
        q_as = 3600.0 * self.params.capacity_ah * self.capacity_factor
        if current < 0.0:
            eta = self.params.eta_charge
            coulombic = -current * ocv * (1.0 - eta)
        else:
            eta = 1.0 / self.params.eta_discharge
            coulombic = current * ocv * (eta - 1.0)
        self.soc = min(max(soc - current * dt_s * eta / q_as, 0.0), 1.0)
        self.v1 = self.v1 * a + current * r1 * (1.0 - a)
        self.ocv_v = ocv
        self.current_a = current
        self.voltage_v = voltage
        self.power_w = current * voltage
        self.loss_w = current * current * self._r0 + current * v1_avg + coulombic
        return self.power_w
