"""N satellites' power and thermal plants stepped at once (numpy): :class:`hil.plant.Plant` vectorised.

The models and every parameter are hil/plant's (one design for the fleet, from a
:class:`hil.plant.PlantConfig`): the Thevenin 1-RC battery of :mod:`hil.plant.battery` (step-average
power solved as a quadratic, charge-current / constant-voltage / cut-off limits, coulombic and
resistive losses; ``BatteryModel.step`` re-expressed on arrays), the two-node thermal model of
:mod:`hil.plant.thermal` (its own ``ThermalModel.step``, whose arithmetic is elementwise, stepping
arrays), the array of :mod:`hil.plant.solar` and the loads of :mod:`hil.plant.loads`; the power flow
per step is ``Plant._advance``'s (solar first, then battery, shunt the excess, brown out compute
first). tests/test_fleet_plant_governor.py checks it against ``Plant`` for one satellite, step by step.
Not modelled in the fleet: faults (string loss, capacity fade, emissivity loss, beta override).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hil.plant.constants import ZERO_C_K
from hil.plant.plant import PlantConfig
from hil.plant.thermal import ThermalModel

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class FleetPlantState:
    """The fleet after a step (each array (N,)): powers W (step averages), ``soc`` 0..1, ``battery_v``
    step-average terminal V, ``battery_a`` (+ discharge), ``battery_wh`` chemical energy, temperatures
    °C, ``brownout`` (compute could not be fully served)."""

    soc: FloatArray
    battery_v: FloatArray
    battery_a: FloatArray
    battery_wh: FloatArray
    battery_loss_w: FloatArray
    solar_w: FloatArray
    shunt_w: FloatArray
    bus_w: FloatArray
    compute_w: FloatArray
    load_w: FloatArray
    unserved_w: FloatArray
    brownout: BoolArray
    board_c: FloatArray
    radiator_c: FloatArray


def source_powers_w(config: PlantConfig, fraction: FloatArray, sun_w_m2: FloatArray,
                    zenith_sun_w_m2: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(array power, bus load) in W for step-average illumination (any array shape): SolarArray.power_w
    with every string healthy, LoadModel.bus_power_w."""
    flux = zenith_sun_w_m2 if config.array.pointing == "zenith" else sun_w_m2
    solar = config.array.w_per_w_m2 * flux
    bus = config.loads.bus_w + config.loads.eclipse_extra_w * (1.0 - fraction)
    return solar, bus


class FleetPlant:
    """``FleetPlant(config, n, initial_soc=None)``; ``step(dt_s, fraction, sun_w_m2, zenith_sun_w_m2,
    compute_w)`` with (N,) arrays -> :class:`FleetPlantState` (also kept as ``state``)."""

    def __init__(self, config: PlantConfig, n: int, initial_soc: FloatArray | float | None = None) -> None:
        self.config = config
        self.n = n
        b = config.battery
        self._ocv_knots = np.linspace(0.0, 1.0, len(b.ocv_cell_v))
        self._ocv_pack = b.series * np.asarray(b.ocv_cell_v, dtype=np.float64)
        self._table = np.asarray(b.ocv_cell_v, dtype=np.float64)
        self._knot_integrals = np.asarray(b._knot_integrals, dtype=np.float64)
        self._r0, self._r1, self._tau = b.r0_ohm, b.r1_ohm, b.tau_s
        self._v_max = b.v_cell_max * b.series
        self._v_min = b.v_cell_min * b.series
        soc0 = config.initial_soc if initial_soc is None else initial_soc
        self.soc = np.clip(np.broadcast_to(np.asarray(soc0, dtype=np.float64), (n,)).copy(), 0.0, 1.0)
        self.v1 = np.zeros(n)
        # ThermalModel's step is elementwise arithmetic: it steps arrays of satellites as it steps floats
        self.thermal = ThermalModel(config.thermal)
        self.thermal.board_k = np.full(n, self.thermal.board_k)  # type: ignore[assignment]
        self.thermal.radiator_k = np.full(n, self.thermal.radiator_k)  # type: ignore[assignment]
        ocv = self.ocv_v(self.soc)
        z = np.zeros(n)
        bus = np.full(n, config.loads.bus_w)
        idle = np.full(n, config.board.idle_w)
        self.state = FleetPlantState(self.soc.copy(), ocv, z.copy(), self.energy_wh(self.soc), z.copy(), z.copy(),
                                     z.copy(), bus, idle, bus + idle, z.copy(), np.zeros(n, dtype=bool),
                                     *self._temperatures_c())

    # ------------------------------------------------------------------------------- battery

    def ocv_v(self, soc: FloatArray) -> FloatArray:
        """Pack open-circuit voltage (V) at each ``soc`` (BatteryParams.ocv_v, vectorised)."""
        return np.interp(soc, self._ocv_knots, self._ocv_pack)

    def energy_wh(self, soc: FloatArray) -> FloatArray:
        """Chemical energy stored at each ``soc``, Wh (BatteryParams.energy_wh, vectorised)."""
        b = self.config.battery
        m = len(self._table) - 1
        x = np.clip(soc, 0.0, 1.0) * m
        i = np.minimum(x.astype(np.int64), m - 1)
        frac = x - i
        part = self._table[i] * frac + (self._table[i + 1] - self._table[i]) * frac * frac / 2.0
        energy: FloatArray = b.capacity_ah * b.series * (self._knot_integrals[i] + part) / m
        return energy

    def _battery_step(self, power_w: FloatArray, dt: float) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """BatteryModel.step for N packs: (terminal power, current, step-average voltage, losses)."""
        b = self.config.battery
        a = math.exp(-dt / self._tau)
        k = self._tau * (1.0 - a) / dt
        soc = self.soc
        ocv = self.ocv_v(soc)
        r1 = self._r1
        e = ocv - k * self.v1
        r = self._r0 + (1.0 - k) * r1
        disc = e * e - 4.0 * r * power_w
        current = np.where(disc > 0.0, (e - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * r), e / (2.0 * r))
        ch = np.maximum.reduce([current, np.full_like(current, -b.charge_current_limit_a), (e - self._v_max) / r])
        ch = np.where((soc >= 1.0) | (ch > 0.0), 0.0, ch)
        dis = np.minimum(current, (e - self._v_min) / r)
        dis = np.where((soc <= 0.0) | (dis < 0.0), 0.0, dis)
        current = np.where(current < 0.0, ch, dis)
        v1_avg = k * self.v1 + (1.0 - k) * current * r1
        voltage = ocv - current * self._r0 - v1_avg
        q_as = 3600.0 * b.capacity_ah
        charging = current < 0.0
        eta = np.where(charging, b.eta_charge, 1.0 / b.eta_discharge)
        coulombic = np.where(charging, -current * ocv * (1.0 - b.eta_charge),
                             current * ocv * (1.0 / b.eta_discharge - 1.0))
        self.soc = np.clip(soc - current * dt * eta / q_as, 0.0, 1.0)
        self.v1 = self.v1 * a + current * r1 * (1.0 - a)
        loss = current * current * self._r0 + current * v1_avg + coulombic
        return current * voltage, current, voltage, loss

    def _temperatures_c(self) -> tuple[FloatArray, FloatArray]:
        """(board, radiator) temperatures, °C."""
        return (np.asarray(self.thermal.board_k, dtype=np.float64) - ZERO_C_K,
                np.asarray(self.thermal.radiator_k, dtype=np.float64) - ZERO_C_K)

    # ------------------------------------------------------------------------------- step

    def step(self, dt_s: float, fraction: FloatArray, sun_w_m2: FloatArray, zenith_sun_w_m2: FloatArray,
             compute_w: FloatArray) -> FleetPlantState:
        """Advance every satellite ``dt_s`` s with step-average illumination and board demand (W)."""
        solar, bus = source_powers_w(self.config, fraction, sun_w_m2, zenith_sun_w_m2)
        demand = bus + compute_w
        request = demand - solar
        p, current, voltage, loss = self._battery_step(request, dt_s)
        discharging = request >= 0.0
        unserved = np.where(discharging, request - p, 0.0)
        unserved = np.where(unserved < 1e-9, 0.0, unserved)
        shunt = np.where(discharging, 0.0, np.maximum(p - request, 0.0))
        served = np.where(compute_w > unserved, compute_w - unserved, 0.0)
        load = demand - unserved
        self.thermal.step(served, load - served + loss, fraction, sun_w_m2, dt_s)  # type: ignore[arg-type]
        board_c, radiator_c = self._temperatures_c()
        self.state = FleetPlantState(
            soc=self.soc, battery_v=voltage, battery_a=current, battery_wh=self.energy_wh(self.soc),
            battery_loss_w=loss, solar_w=solar, shunt_w=shunt, bus_w=bus, compute_w=served, load_w=load,
            unserved_w=unserved, brownout=unserved > 0.0, board_c=board_c, radiator_c=radiator_c)
        return self.state
