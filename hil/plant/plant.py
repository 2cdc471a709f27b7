"""The plant: a pure simulator of a compute satellite's power and thermal state.

``Plant`` composes :class:`IlluminationModel` (orbit + Sun + conical shadow), :class:`SolarArray`,
:class:`BatteryModel`, :class:`ThermalModel` and the loads (:class:`LoadModel` + :class:`BoardProfile`),
with faults from a :class:`FaultSchedule`. It has no clock, no I/O, no randomness: ``step(dt)``
advances mission time by ``dt`` seconds. Illumination is precomputed with numpy on a 1 s grid
(extended on demand), battery and thermal are stepped in plain floats.

Power flow per step (all W, averages over the step):
    solar_w      = array power available (illumination fraction * irradiance * array factors)
    load_demand  = bus_w + compute_w;  battery asked for load_demand - solar_w (+ discharge)
    charging:    the battery takes what its current/voltage limits allow; the rest is shunt_w
    discharging: if the battery cannot deliver (cut-off voltage, SOC 0) the bus browns out:
                 unserved_w > 0, shed from compute first
    heat:        compute_w (served) -> board node; bus_w (served) + battery losses -> radiator node
Energy balance: solar_w - shunt_w - load_w = -battery_power_w = d(battery_wh)/dt + battery_loss_w.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from hil.plant.battery import BatteryModel, BatteryParams
from hil.plant.constants import ZERO_C_K
from hil.plant.faults import FaultSchedule, PhysicsOverrides
from hil.plant.illumination import IlluminationModel, IlluminationTable
from hil.plant.loads import BoardProfile, LoadModel
from hil.plant.orbit import CircularOrbit, TleOrbit
from hil.plant.shadow import cylindrical_in_shadow, eclipse_fraction_cylindrical
from hil.plant.solar import SolarArray
from hil.plant.thermal import ThermalModel, ThermalParams

FloatArray = npt.NDArray[np.float64]

SUNLIT_THRESHOLD = 0.5
"""Illumination fraction at or above which the satellite counts as sunlit (mid-penumbra)."""

ECLIPSE_SAMPLE_S = 1.0
"""Spacing of the propagated positions a TLE orbit's eclipse fraction is counted on, s (an eclipse
edge is placed within 1 s: 0.02 % of a 95 min orbit)."""


@dataclass(frozen=True)
class PlantConfig:
    """Everything that defines a plant. ``solar_constant_w_m2`` is S at 1 AU (physics.md: 1360.8)."""

    orbit: CircularOrbit | TleOrbit
    array: SolarArray
    battery: BatteryParams
    thermal: ThermalParams
    loads: LoadModel
    board: BoardProfile
    initial_soc: float = 0.9
    solar_constant_w_m2: float = 1361.0
    illumination_resolution_s: float = 1.0


@dataclass(frozen=True, slots=True)
class PlantState:
    """The plant after a step of ``dt_s`` ending at mission time ``t_s`` (s). Powers are step averages
    (W), temperatures °C, energies Wh, ``battery_a`` + = discharge, ``battery_power_w`` terminal power
    + = discharge. ``solar_w`` is what the array can deliver (before shunting)."""

    t_s: float
    dt_s: float
    illumination: float
    sunlit: bool
    beta_deg: float
    period_s: float
    eclipse_fraction: float
    t_orbit_s: float
    solar_w: float
    shunt_w: float
    bus_w: float
    compute_w: float
    busy_cores: float
    load_w: float
    load_demand_w: float
    unserved_w: float
    brownout: bool
    soc: float
    battery_v: float
    battery_a: float
    battery_wh: float
    battery_ocv_v: float
    battery_power_w: float
    battery_loss_w: float
    board_c: float
    radiator_c: float
    radiator_rejected_w: float
    env_heat_w: float
    emissivity: float


STATE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PlantState))


class PlantTrace:
    """A run's history: one numpy array per :class:`PlantState` field (``trace["soc"]``, ``trace.soc``
    via :meth:`column`), one entry per recorded step."""

    def __init__(self, columns: dict[str, FloatArray]) -> None:
        self.columns = columns

    def __getitem__(self, name: str) -> FloatArray:
        return self.columns[name]

    def __len__(self) -> int:
        return len(self.columns["t_s"])

    def at(self, i: int) -> PlantState:
        """The i-th recorded state."""
        kw: dict[str, float | bool] = {}
        for name in STATE_FIELDS:
            v = float(self.columns[name][i])
            kw[name] = bool(v) if name in ("sunlit", "brownout") else v
        return PlantState(**kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SolarForecast:
    """Known-in-advance sunlight: for each interval starting at ``t_s`` (length ``dt_s``): average
    illumination ``fraction``, ``sunlit`` (fraction >= 0.5) and array power ``solar_w`` (W) with the
    array as it is at the forecast's start (string losses then in force; later faults unknown)."""

    t_s: FloatArray
    dt_s: float
    fraction: FloatArray
    sunlit: npt.NDArray[np.bool_]
    solar_w: FloatArray


@dataclass(frozen=True)
class LinearParameters:
    """What a governor or an offline optimiser needs to model the plant linearly.

    Power: ``bus_w``, compute ``idle_w`` + ``w_per_core`` * busy (0..``cores``), array ``peak_solar_w``
    (full Sun, current strings); battery ``capacity_wh`` (chemical, SOC 0..1, after fade),
    ``nominal_v`` (OCV at 50%), ``r_internal_ohm`` (R0 + R1), ``charge_limit_w`` (charge-current limit
    at nominal voltage), ``eta_charge``/``eta_discharge`` (coulombic).
    Thermal: ``board_capacity_j_k``, ``radiator_capacity_j_k``, ``conductance_w_k`` (board-radiator),
    ``radiative_conductance_w_k`` = 4 eps sigma A T^3 at the current radiator temperature, ``emissivity``,
    ``radiator_area_m2``, ``sink_k``, ``env_heat_sun_w`` / ``env_heat_eclipse_w`` (absorbed environmental
    heat in full Sun / in eclipse), ``board_max_c``.
    Orbit: ``period_s``, ``eclipse_fraction`` (share of the current orbit in the cylindrical shadow,
    see :meth:`Plant.eclipse_fraction_at`)."""

    bus_w: float
    idle_w: float
    w_per_core: float
    cores: int
    peak_solar_w: float
    capacity_wh: float
    nominal_v: float
    r_internal_ohm: float
    charge_limit_w: float
    eta_charge: float
    eta_discharge: float
    board_capacity_j_k: float
    radiator_capacity_j_k: float
    conductance_w_k: float
    radiative_conductance_w_k: float
    emissivity: float
    radiator_area_m2: float
    sink_k: float
    env_heat_sun_w: float
    env_heat_eclipse_w: float
    board_max_c: float
    period_s: float
    eclipse_fraction: float


BusyInput = float | Sequence[float] | FloatArray
Policy = Callable[[PlantState], float]


class Plant:
    """A compute satellite's power and thermal plant.

    ``Plant(config, faults, t0_s=0)``; ``step(dt_s, busy_cores=..., compute_w=...)`` -> PlantState;
    ``run(duration_s, dt_s, busy_cores=..., policy=...)`` -> PlantTrace (the fast path);
    ``solar_forecast(t0_s, horizon_s, dt_s)``; ``linear_parameters()``.
    ``hil.scenario.load_scenario("nominal-550km").build_plant()`` builds one from hil/scenarios/.
    """

    def __init__(self, config: PlantConfig, faults: FaultSchedule | None = None, t0_s: float = 0.0) -> None:
        self.config = config
        self.faults = faults or FaultSchedule()
        self.illumination = IlluminationModel(config.orbit, config.solar_constant_w_m2)
        self.table = IlluminationTable(
            self.illumination,
            origin_s=t0_s,
            resolution_s=config.illumination_resolution_s,
            beta_schedule=self._beta_schedule,
        )
        self.array = config.array
        self.board = config.board
        self.loads = config.loads
        self.battery = BatteryModel(config.battery, config.initial_soc)
        self.thermal = ThermalModel(config.thermal)
        self.t_s = t0_s
        self._period_s = config.orbit.period_s
        self._change_times = self.faults.change_times()
        self._next_change_i = 0
        self._overrides = PhysicsOverrides()
        if isinstance(config.orbit, TleOrbit) and any(f.kind == "beta_change" for f in self.faults.physical):
            raise ValueError("a beta_change fault needs a circular orbit (a TLE's beta follows from its geometry)")
        self._apply_overrides(t0_s)
        self._last_exit_s = self._find_last_eclipse_exit(t0_s)
        frac0, _, _, beta0 = self.table.average(t0_s, t0_s + config.illumination_resolution_s)
        self._sunlit = frac0 >= SUNLIT_THRESHOLD
        self._ecl_cache: tuple[float, float] = (math.nan, 0.0)
        bus0 = self.loads.bus_power_w(frac0)
        compute0 = self.board.compute_w(0.0)
        self._values = self._values_now(0.0, frac0, beta0, 0.0, 0.0, bus0, compute0, 0.0, bus0 + compute0, 0.0)
        self._state: PlantState | None = PlantState(*self._values)  # type: ignore[arg-type]

    def _beta_schedule(self, t: FloatArray) -> FloatArray | None:
        orbit = self.config.orbit
        return self.faults.beta_deg_at(t, orbit.beta_deg) if isinstance(orbit, CircularOrbit) else None

    def _apply_overrides(self, t_s: float) -> None:
        """Bring fault-driven parameters up to date for time ``t_s``."""
        times = self._change_times
        while self._next_change_i < len(times) and times[self._next_change_i] <= t_s:
            self._next_change_i += 1
        o = self.faults.physics_at(t_s)
        self._overrides = o
        p = self.config.thermal
        self.thermal.emissivity = p.emissivity if o.emissivity is None else o.emissivity
        self.thermal.absorptivity = p.absorptivity if o.absorptivity is None else o.absorptivity
        self.battery.capacity_factor = o.capacity_factor

    def _next_change_s(self) -> float:
        times = self._change_times
        return times[self._next_change_i] if self._next_change_i < len(times) else math.inf

    def _find_last_eclipse_exit(self, t0_s: float) -> float:
        """Time of the last shadow -> Sun transition in the orbit before ``t0_s`` (t0 - period if none)."""
        period = self.config.orbit.period_s
        t = t0_s - period + np.arange(0.0, period, 1.0)
        frac = self.illumination.sample(t, self._beta_schedule(t)).fraction
        lit = frac >= SUNLIT_THRESHOLD
        exits = np.nonzero(lit[1:] & ~lit[:-1])[0]
        return float(t[exits[-1] + 1]) if len(exits) else t0_s - period

    # ------------------------------------------------------------------------------------ queries

    @property
    def state(self) -> PlantState:
        """The state after the last step (at construction: the initial state, dt_s = 0)."""
        if self._state is None:
            self._state = PlantState(*self._values)  # type: ignore[arg-type]
        return self._state

    def beta_deg(self, t_s: float) -> float:
        """Beta angle at ``t_s`` (fault overrides included; from the geometry for a TLE), deg."""
        return self.table.average(t_s, t_s + self.config.illumination_resolution_s)[3]

    def eclipse_fraction_at(self, t_s: float, beta_deg: float) -> float:
        """Share of the orbit around ``t_s`` in the Earth's cylindrical shadow, from the orbit's geometry.

        Circular orbit: the closed form at ``beta_deg`` (the beta in force, faults included), exact for
        a circular orbit (physics.md). TLE orbit: counted on the propagated positions, one per
        ``ECLIPSE_SAMPLE_S``, over the orbit that began at the last eclipse exit (the one the governor's
        ``t_orbit_s`` counts in; whole periods on from it in continuous sunlight). An eccentric orbit's
        share differs from the circular formula at its mean altitude by tens of per cent, depending on
        where perigee lies relative to the shadow. Cached: recomputed once per orbit (TLE) or per beta.
        """
        orbit = self.config.orbit
        if isinstance(orbit, CircularOrbit):
            key = beta_deg
        else:
            k = math.floor((t_s - self._last_exit_s) / self._period_s)
            key = self._last_exit_s + k * self._period_s
        cached_key, value = self._ecl_cache
        if key == cached_key:
            return value
        if isinstance(orbit, CircularOrbit):
            value = eclipse_fraction_cylindrical(orbit.altitude_km, beta_deg)
        else:
            n = math.ceil(self._period_s / ECLIPSE_SAMPLE_S)
            t = key + (np.arange(n, dtype=np.float64) + 0.5) * ECLIPSE_SAMPLE_S
            geo = orbit.sample(t[t < key + self._period_s])
            value = float(np.mean(cylindrical_in_shadow(geo.r_km, geo.sun_unit)))
        self._ecl_cache = (key, value)
        return value

    def solar_forecast(self, t0_s: float, horizon_s: float, dt_s: float) -> SolarForecast:
        """Illumination and array power over [t0, t0 + horizon) in intervals of ``dt_s`` (t0 >= the
        plant's start time). Deterministic: the same numbers the plant will use."""
        n = max(1, round(horizon_s / dt_s))
        edges = t0_s + dt_s * np.arange(n + 1, dtype=np.float64)
        avg = self.table.averages(edges)
        lost = self._overrides.strings_lost
        solar = np.array(
            [self.array.power_w(s, z, lost) for s, z in zip(avg.sun_w_m2, avg.zenith_sun_w_m2, strict=True)]
        )
        return SolarForecast(edges[:-1], dt_s, avg.fraction, avg.fraction >= SUNLIT_THRESHOLD, solar)

    def linear_parameters(self) -> LinearParameters:
        """Linearisable parameters at the current state (see :class:`LinearParameters`)."""
        b = self.config.battery
        th = self.config.thermal
        s = self.config.solar_constant_w_m2
        nominal_v = b.ocv_v(0.5)
        beta = self.beta_deg(self.t_s)
        return LinearParameters(
            bus_w=self.loads.bus_w,
            idle_w=self.board.idle_w,
            w_per_core=self.board.w_per_core,
            cores=self.board.cores,
            peak_solar_w=self.array.power_w(s, s, self._overrides.strings_lost),
            capacity_wh=b.capacity_wh * self.battery.capacity_factor,
            nominal_v=nominal_v,
            r_internal_ohm=b.r0_ohm + b.r1_ohm,
            charge_limit_w=b.charge_current_limit_a * nominal_v,
            eta_charge=b.eta_charge,
            eta_discharge=b.eta_discharge,
            board_capacity_j_k=th.board_capacity_j_k,
            radiator_capacity_j_k=th.radiator_capacity_j_k,
            conductance_w_k=th.conductance_w_k,
            radiative_conductance_w_k=th.radiative_conductance_w_k(self.thermal.radiator_c, self.thermal.emissivity),
            emissivity=self.thermal.emissivity,
            radiator_area_m2=th.radiator_area_m2,
            sink_k=th.sink_k,
            env_heat_sun_w=self.thermal.env_heat_w(1.0, s),
            env_heat_eclipse_w=self.thermal.env_heat_w(0.0, 0.0),
            board_max_c=self.board.max_c,
            period_s=self.config.orbit.period_s,
            eclipse_fraction=self.eclipse_fraction_at(self.t_s, beta),
        )

    # ------------------------------------------------------------------------------------ stepping

    def step(self, dt_s: float, busy_cores: float | None = None, compute_w: float | None = None) -> PlantState:
        """Advance ``dt_s`` seconds with the compute load given as ``busy_cores`` (turned into W by the
        board profile) or directly as ``compute_w`` (W); neither: idle board."""
        if dt_s <= 0:
            raise ValueError("dt_s must be > 0")
        frac, sun, zsun, beta = self.table.average(self.t_s, self.t_s + dt_s)
        busy = 0.0 if busy_cores is None else float(busy_cores)
        demand = self.board.compute_w(busy) if compute_w is None else float(compute_w)
        self._advance(dt_s, frac, sun, zsun, beta, demand, busy)
        return self.state

    def run(
        self,
        duration_s: float,
        dt_s: float = 1.0,
        *,
        busy_cores: BusyInput = 0.0,
        compute_w: BusyInput | None = None,
        policy: Policy | None = None,
        record_every: int = 1,
    ) -> PlantTrace:
        """Advance ``duration_s`` in steps of ``dt_s`` and return the recorded states (every
        ``record_every``-th step). The load is ``policy(state) -> busy_cores`` called before each step
        (closed loop), else ``compute_w`` (W) or ``busy_cores``, each a constant or one value per step.
        Illumination for the whole horizon is computed up front with numpy."""
        n = round(duration_s / dt_s)
        edges = self.t_s + dt_s * np.arange(n + 1, dtype=np.float64)
        avg = self.table.averages(edges)
        fr_l = avg.fraction.tolist()
        sun_l = avg.sun_w_m2.tolist()
        zs_l = avg.zenith_sun_w_m2.tolist()
        beta_l = avg.beta_deg.tolist()
        busy_arr = np.broadcast_to(np.asarray(busy_cores, dtype=np.float64), (n,))
        if compute_w is None:
            board = self.board
            demand_arr = board.idle_w + board.w_per_core * np.clip(busy_arr, 0.0, float(board.cores))
        else:
            demand_arr = np.broadcast_to(np.asarray(compute_w, dtype=np.float64), (n,))
        busy_l = busy_arr.tolist()
        demand_l = demand_arr.tolist()
        rows: list[tuple[float | bool, ...]] = []
        advance = self._advance
        append = rows.append
        for i in range(n):
            if policy is not None:
                busy = float(policy(self.state))
                advance(dt_s, fr_l[i], sun_l[i], zs_l[i], beta_l[i], self.board.compute_w(busy), busy)
            else:
                advance(dt_s, fr_l[i], sun_l[i], zs_l[i], beta_l[i], demand_l[i], busy_l[i])
            if i % record_every == 0 or i == n - 1:
                append(self._values)
        table = np.array(rows, dtype=np.float64).reshape(len(rows), len(STATE_FIELDS))
        return PlantTrace({name: table[:, j] for j, name in enumerate(STATE_FIELDS)})

    def _advance(
        self, dt: float, frac: float, sun: float, zsun: float, beta: float, compute: float, busy: float
    ) -> None:
        """One step with the given step-average illumination; updates every state variable."""
        if self.t_s >= self._next_change_s():
            self._apply_overrides(self.t_s)
        bus = self.loads.bus_power_w(frac)
        solar = self.array.power_w(sun, zsun, self._overrides.strings_lost)
        demand = bus + compute
        request = demand - solar
        battery = self.battery
        p = battery.step(request, dt)
        if request >= 0.0:
            shunt = 0.0
            unserved = request - p
            if unserved < 1e-9:
                unserved = 0.0
        else:
            shunt = p - request
            if shunt < 0.0:
                shunt = 0.0
            unserved = 0.0
        compute_served = compute - unserved if compute > unserved else 0.0
        load = demand - unserved
        self.thermal.step(compute_served, load - compute_served + battery.loss_w, frac, sun, dt)
        self.t_s += dt
        sunlit = frac >= SUNLIT_THRESHOLD
        if sunlit and not self._sunlit:
            self._last_exit_s = self.t_s - dt
        self._sunlit = sunlit
        self._values = self._values_now(dt, frac, beta, solar, shunt, bus, compute_served, busy, load, unserved)
        self._state = None

    def _values_now(
        self,
        dt: float,
        frac: float,
        beta: float,
        solar: float,
        shunt: float,
        bus: float,
        compute: float,
        busy: float,
        load: float,
        unserved: float,
    ) -> tuple[float | bool, ...]:
        """The current state as a tuple in :data:`STATE_FIELDS` order."""
        b = self.battery
        th = self.thermal
        ecl = self.eclipse_fraction_at(self.t_s, beta)
        return (
            self.t_s,
            dt,
            frac,
            self._sunlit,
            beta,
            self._period_s,
            ecl,
            self.t_s - self._last_exit_s,
            solar,
            shunt,
            bus,
            compute,
            busy,
            load,
            load + unserved,
            unserved,
            unserved > 0.0,
            b.soc,
            b.voltage_v,
            b.current_a,
            b.energy_wh,
            b.ocv_v,
            b.power_w,
            b.loss_w,
            th.board_k - ZERO_C_K,
            th.radiator_k - ZERO_C_K,
            th.rejected_w,
            th.env_w,
            th.emissivity,
        )
