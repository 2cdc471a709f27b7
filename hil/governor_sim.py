"""Simulation harness: run a compute policy against the plant at simulation speed.

A policy sees the telemetry the plant would publish (``power``, ``thermal``, ``orbit`` channels
from :func:`hil.plant.telemetry.channel_values`, named by :mod:`link.telemetry`) and returns the
busy cores it allows; the harness runs a job workload on those cores (jobs' true cost: the bundled
tile model's measured cost), feeds the busy cores back to the plant (board power profile), and
scores the run:

- ``value``: sum over jobs finished before their deadline of ``units * (1 + priority)``
  (tiles weighted by priority class);
- ``violation_s``: seconds in which any limit is broken (SoC < floor, battery voltage < floor,
  board or radiator above its ceiling, or a brownout), with the split per limit, scored by
  :mod:`hil.scoring` on the plant's telemetry as the SIL report is;
- ``deadline_misses``: jobs whose deadline fell inside the run and that did not finish before it;
- ``min_soc``, ``max_board_c``, ``max_radiator_c``, ``core_s`` (busy core-seconds of work done).

Policies: :class:`OrbitdPolicy` (the governor + its admission-controlled scheduler),
:class:`ThresholdPolicy` (OEC-style sleep/wake thresholds with hysteresis, Denby & Lucia ASPLOS 2020),
:class:`FullThrottlePolicy` (flat out, hard cut-off at the limits), :class:`PlanPolicy` (replays the
offline optimum of :mod:`hil.optimum`). Pure: no clock, no I/O; a seeded RNG for the workload.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from flight.governor.admission import Allocation, RunningJob, plan_dispatch
from flight.governor.config import (
    BatteryConfig,
    BoardProfile,
    GovernorConfig,
    OrbitFallback,
    ThermalModelConfig,
)
from flight.governor.costs import TILE_MODEL_INF_PER_S, TILE_MODEL_THREADS, CostModel
from flight.governor.governor import Governor, Sample
from flight.governor.limits import Limits
from flight.queue_policy import QueuedJob, policy_order
from hil.optimum import Plan, PlanInputs, solve
from hil.plant.plant import Plant, PlantState
from hil.plant.telemetry import channel_values
from hil.scoring import ViolationTally

FloatArray = npt.NDArray[np.float64]

TILE_CORE_S = TILE_MODEL_THREADS / TILE_MODEL_INF_PER_S
"""True cost of one tile in the simulation: 2 threads / 496 inf/s = 4.03 ms core-seconds
(boards-and-runtime.md, INT8 7-conv CNN 3x128x128)."""


# ------------------------------------------------------------------------------------------ workload


@dataclass(frozen=True)
class SimJob:
    """A job of ``units`` tiles of the tile model, arriving at ``arrival_s``."""

    job_id: str
    priority: int
    arrival_s: float
    deadline_s: float | None
    units: int
    model: str = "tiles"

    @property
    def value(self) -> float:
        return self.units * (1.0 + self.priority)

    @property
    def core_s(self) -> float:
        return self.units * TILE_CORE_S


@dataclass(frozen=True)
class WorkloadSpec:
    """Poisson arrivals of image scenes with ``mean_cores`` of average demand (busy cores), in three
    classes: urgent (priority 8-9, deadline ``urgent_deadline_s``), routine (4-6, ``routine_deadline_s``)
    and bulk (0-2, ``bulk_deadline_s``)."""

    mean_cores: float = 1.6
    tiles_min: int = 1024
    tiles_max: int = 8192
    urgent_share: float = 0.2
    routine_share: float = 0.5
    urgent_deadline_s: float = 1800.0
    routine_deadline_s: float = 3 * 3600.0
    bulk_deadline_s: float = 12 * 3600.0


def make_workload(duration_s: float, spec: WorkloadSpec, seed: int = 1) -> list[SimJob]:
    """A reproducible job stream for ``duration_s`` seconds."""
    rng = random.Random(seed)
    mean_units = (spec.tiles_min + spec.tiles_max) / 2.0
    rate = spec.mean_cores / (mean_units * TILE_CORE_S)  # jobs per second
    jobs: list[SimJob] = []
    t = 0.0
    i = 0
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return jobs
        u = rng.random()
        if u < spec.urgent_share:
            prio, dl = rng.choice((8, 9)), spec.urgent_deadline_s
        elif u < spec.urgent_share + spec.routine_share:
            prio, dl = rng.choice((4, 5, 6)), spec.routine_deadline_s
        else:
            prio, dl = rng.choice((0, 1, 2)), spec.bulk_deadline_s
        units = rng.randint(spec.tiles_min, spec.tiles_max)
        jobs.append(SimJob(f"j{i}", prio, t, t + dl * rng.uniform(0.5, 1.5), units))
        i += 1


# ------------------------------------------------------------------------------------------ policies


@dataclass
class Control:
    """A policy's output for the next step: allowed busy cores, preempt running work, mode code."""

    busy_cores: float
    preempt: bool = False
    mode_code: int = 0
    budget_w: float = math.nan


class Policy(Protocol):
    name: str
    admission: bool

    def control(self, now_s: float, state: PlantState) -> Control: ...


class OrbitdPolicy:
    """orbitd's governor, fed the plant's telemetry, with admission-controlled dispatch."""

    name = "orbitd"
    admission = True

    def __init__(self, config: GovernorConfig) -> None:
        self.governor = Governor(config)

    def control(self, now_s: float, state: PlantState) -> Control:
        d = self.governor.update(now_s, [Sample(ch, state.t_s, v) for ch, v in channel_values(state).items()])
        return Control(d.busy_cores, d.preempt, d.mode_code, d.budget_w)


class ThresholdPolicy:
    """OEC-style thresholds with hysteresis (Denby & Lucia, ASPLOS 2020: sleep below 5.75 V, wake at
    >= 6.75 V): compute flat out while awake; sleep when SoC < ``sleep_soc`` or a temperature comes
    within ``temp_margin_c`` of its ceiling; wake when SoC >= ``wake_soc`` and both temperatures are
    ``temp_margin_c + temp_hysteresis_c`` below their ceilings."""

    name = "threshold"
    admission = False

    def __init__(self, limits: Limits, n_cores: float, sleep_soc: float = 0.35, wake_soc: float = 0.50,
                 temp_margin_c: float = 2.0, temp_hysteresis_c: float = 5.0) -> None:
        self.limits, self.n_cores = limits, n_cores
        self.sleep_soc, self.wake_soc = sleep_soc, wake_soc
        self.temp_margin_c, self.temp_hysteresis_c = temp_margin_c, temp_hysteresis_c
        self.awake = True

    def control(self, now_s: float, state: PlantState) -> Control:
        lim = self.limits
        hot = (state.board_c > lim.board_max_c - self.temp_margin_c
               or state.radiator_c > lim.radiator_max_c - self.temp_margin_c)
        cool = (state.board_c < lim.board_max_c - self.temp_margin_c - self.temp_hysteresis_c
                and state.radiator_c < lim.radiator_max_c - self.temp_margin_c - self.temp_hysteresis_c)
        if self.awake and (state.soc < self.sleep_soc or hot):
            self.awake = False
        elif not self.awake and state.soc >= self.wake_soc and cool:
            self.awake = True
        return Control(self.n_cores if self.awake else 0.0, not self.awake, 0 if self.awake else 2)


class FullThrottlePolicy:
    """Flat out; hard cut-off while SoC <= floor or a temperature >= its ceiling (no hysteresis)."""

    name = "full"
    admission = False

    def __init__(self, limits: Limits, n_cores: float) -> None:
        self.limits, self.n_cores = limits, n_cores

    def control(self, now_s: float, state: PlantState) -> Control:
        lim = self.limits
        cut = (state.soc <= lim.soc_floor or state.battery_v <= lim.battery_v_floor
               or state.board_c >= lim.board_max_c or state.radiator_c >= lim.radiator_max_c)
        return Control(0.0 if cut else self.n_cores, cut, 2 if cut else 0)


class PlanPolicy:
    """Replays the offline optimum's busy-cores plan (open loop), with admission-controlled dispatch."""

    name = "optimal"
    admission = True

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def control(self, now_s: float, state: PlantState) -> Control:
        return Control(self.plan.busy_cores_at(now_s))


# ------------------------------------------------------------------------------------------ scenario glue


def effective_efficiencies(plant: Plant) -> tuple[float, float]:
    """(charge, discharge) efficiency of the battery at typical power, coulombic efficiency times the
    resistive loss fraction 1 - P R / V^2 (R = R0 + R1, V = OCV at 50 %): discharge at the full load
    (bus + board flat out), charge at the charge-current limit."""
    b = plant.config.battery
    lp = plant.linear_parameters()
    v = lp.nominal_v
    p_dis = lp.bus_w + lp.idle_w + lp.w_per_core * lp.cores
    p_ch = lp.charge_limit_w
    return (b.eta_charge * (1.0 - p_ch * lp.r_internal_ohm / v**2),
            b.eta_discharge * (1.0 - p_dis * lp.r_internal_ohm / v**2))


def governor_config_for(plant: Plant, limits: Limits, telemetry_period_s: float) -> GovernorConfig:
    """The governor's configuration from the spacecraft's *design* data (the plant's parameters at the
    start: a radiator degraded later is not known to it)."""
    lp = plant.linear_parameters()
    th = plant.config.thermal
    eta_c, eta_d = effective_efficiencies(plant)
    return GovernorConfig(
        telemetry_period_s=telemetry_period_s,
        limits=limits.configs(),
        board=BoardProfile(idle_w=lp.idle_w, w_per_core=lp.w_per_core, n_cores=lp.cores),
        battery=BatteryConfig(capacity_wh=lp.capacity_wh, charge_efficiency=eta_c,
                              discharge_efficiency=eta_d),
        thermal=ThermalModelConfig(
            board_heat_capacity_j_k=th.board_capacity_j_k,
            radiator_heat_capacity_j_k=th.radiator_capacity_j_k,
            board_to_radiator_w_k=th.conductance_w_k,
            radiator_area_m2=th.radiator_area_m2,
            radiator_emissivity=th.emissivity,
            sink_c=th.sink_k - 273.15,
            env_sunlit_w=lp.env_heat_sun_w,
            env_eclipse_w=lp.env_heat_eclipse_w,
            bus_heat_to_radiator=1.0,
        ),
        orbit=OrbitFallback(period_s=lp.period_s, eclipse_fraction=min(0.9, lp.eclipse_fraction)),
        array_peak_w=plant.config.array.peak_w(plant.config.solar_constant_w_m2),
    )


def plan_inputs_for(
    plant: Plant,
    duration_s: float,
    dt_s: float,
    limits: Limits,
    soc_margin: float = 0.005,
    thermal_margin_c: float = 1.0,
    jobs: list[SimJob] | None = None,
) -> PlanInputs:
    """LP inputs with perfect knowledge of the scenario: the plant's forecast of solar power and
    environmental heat over the run, and the true (faulted) radiator emissivity per step."""
    lp = plant.linear_parameters()
    cfg = plant.config
    fc = plant.solar_forecast(plant.t_s, duration_s, dt_s)
    t = fc.t_s
    bus = np.array([plant.loads.bus_power_w(float(f)) for f in fc.fraction])
    th = cfg.thermal
    # true emissivity/absorptivity per step (faults known in advance), env heat per step
    eps = np.empty(len(t))
    env = np.empty(len(t))
    s_avg = plant.table.averages(np.append(t, t[-1] + dt_s)).sun_w_m2
    for i, ti in enumerate(t):
        o = plant.faults.physics_at(float(ti) + 0.5 * dt_s)
        e = th.emissivity if o.emissivity is None else o.emissivity
        a = th.absorptivity if o.absorptivity is None else o.absorptivity
        eps[i] = e
        env[i] = (a * (s_avg[i] + th.albedo_w_m2 * fc.fraction[i]) * th.absorbing_area_m2
                  + e * th.earth_ir_w_m2 * th.radiator_area_m2)
    arrivals = None
    if jobs is not None:
        arrivals = np.zeros(len(t))
        for j in jobs:
            i = int((j.arrival_s - float(t[0])) // dt_s)
            if 0 <= i < len(t):
                arrivals[i] += j.core_s
    b = cfg.battery
    eta_c, eta_d = effective_efficiencies(plant)
    cap_factor = min(plant.faults.physics_at(float(ti)).capacity_factor for ti in t)
    # constant-voltage charge taper: ch <= V_max (V_max - OCV(E)) / R, OCV(E) linear between SoC 0.7 and 1
    v_max = b.v_cell_max * b.series
    e_a, e_b = b.energy_wh(0.7, cap_factor), b.energy_wh(1.0, cap_factor)
    o_a, o_b = b.ocv_v(0.7), b.ocv_v(1.0)
    ocv_slope = (o_b - o_a) / (e_b - e_a)  # V per Wh
    r_tot = b.r0_ohm + b.r1_ohm
    cv_slope = v_max * ocv_slope / r_tot
    cv_intercept = v_max * (v_max - o_a + ocv_slope * e_a) / r_tot
    return PlanInputs(
        dt_s=dt_s,
        solar_w=fc.solar_w,
        bus_w=bus,
        env_w=env,
        energy0_wh=plant.battery.energy_wh,
        energy_min_wh=b.energy_wh(limits.soc_floor + soc_margin, cap_factor),
        energy_max_wh=b.energy_wh(0.995, cap_factor),
        charge_w_max=lp.charge_limit_w,
        eta_charge=eta_c,
        eta_discharge=eta_d,
        idle_w=lp.idle_w,
        w_per_core=lp.w_per_core,
        n_cores=float(lp.cores),
        board_capacity_j_k=th.board_capacity_j_k,
        radiator_capacity_j_k=th.radiator_capacity_j_k,
        conductance_w_k=th.conductance_w_k,
        radiator_k4_w_k4=eps * 5.670374e-8 * th.radiator_area_m2,
        sink_k=th.sink_k,
        board0_c=plant.thermal.board_c,
        radiator0_c=plant.thermal.radiator_c,
        board_max_c=limits.board_max_c - thermal_margin_c,
        radiator_max_c=limits.radiator_max_c - thermal_margin_c,
        work_arrival_core_s=arrivals,
        cv_intercept_w=cv_intercept,
        cv_slope_w_per_wh=cv_slope,
    )


# ------------------------------------------------------------------------------------------ the run


@dataclass
class RunResult:
    """Scores and traces of one run (see the module docstring)."""

    policy: str
    value: float = 0.0
    core_s: float = 0.0
    jobs_done: int = 0
    deadline_misses: int = 0
    rejected: int = 0
    violation_s: float = 0.0
    violation_by_limit: dict[str, float] = field(default_factory=dict)
    min_soc: float = 1.0
    max_board_c: float = -math.inf
    max_radiator_c: float = -math.inf
    mode_changes: int = 0
    trace_t: list[float] = field(default_factory=list)
    trace_soc: list[float] = field(default_factory=list)
    trace_board: list[float] = field(default_factory=list)
    trace_radiator: list[float] = field(default_factory=list)
    trace_busy: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "value": round(self.value, 1),
            "violation_s": round(self.violation_s, 1),
            "violation_by_limit": {k: round(v, 1) for k, v in self.violation_by_limit.items() if v > 0},
            "deadline_misses": self.deadline_misses,
            "jobs_done": self.jobs_done,
            "core_s": round(self.core_s, 1),
            "min_soc": round(self.min_soc, 4),
            "max_board_c": round(self.max_board_c, 2),
            "max_radiator_c": round(self.max_radiator_c, 2),
            "mode_changes": self.mode_changes,
        }


def run_policy(
    plant: Plant,
    policy: Policy,
    jobs: list[SimJob],
    duration_s: float,
    dt_s: float,
    limits: Limits,
    trace_every: int = 6,
) -> RunResult:
    """Run ``policy`` for ``duration_s`` in steps of ``dt_s``; the plant is consumed (stepped)."""
    res = RunResult(policy.name)
    pending = sorted(jobs, key=lambda j: j.arrival_s)
    by_id = {j.job_id: j for j in jobs}
    next_i = 0
    queue: dict[str, SimJob] = {}
    current: SimJob | None = None
    current_left = 0.0  # core-s left on the current job
    costs = CostModel(plant.board.w_per_core)
    n_cores = float(plant.board.cores)
    state = plant.state
    last_mode = -1
    done_ids: set[str] = set()
    tally = ViolationTally(limits)
    steps = round(duration_s / dt_s)
    for k in range(steps):
        now = plant.t_s
        while next_i < len(pending) and pending[next_i].arrival_s <= now:
            queue[pending[next_i].job_id] = pending[next_i]
            next_i += 1
        ctl = policy.control(now, state)
        if ctl.mode_code != last_mode:
            res.mode_changes += last_mode >= 0
            last_mode = ctl.mode_code
        busy = min(n_cores, max(0.0, ctl.busy_cores))
        if ctl.preempt and current is not None:  # requeue: the work done on it is lost
            queue[current.job_id] = current
            current = None
        budget = busy * dt_s  # core-s available this step
        spent = 0.0
        t_end = now + dt_s
        if budget > 0:
            qjobs = [QueuedJob(j.job_id, j.priority, j.model, j.arrival_s, j.deadline_s, j.units)
                     for j in queue.values()]
            if policy.admission:
                alloc = Allocation(10**6, 1, busy, plant.board.compute_w(busy), plant.board.idle_w, n_cores)
                running = [RunningJob(current.job_id, current.model, current_left / TILE_CORE_S)] if current else []
                plan = plan_dispatch(now, qjobs, running, alloc, costs)
                for job, _why in plan.reject:
                    del queue[job.job_id]
                    res.rejected += 1
                order = [by_id[j.job_id] for j in plan.start]
            else:
                order = [by_id[j.job_id] for j in policy_order(qjobs)
                         if j.deadline_s is None or j.deadline_s > now]
            oi = 0
            while spent < budget - 1e-12:
                if current is None:
                    if oi >= len(order):
                        break
                    current = order[oi]
                    oi += 1
                    del queue[current.job_id]
                    current_left = current.core_s
                use = min(current_left, budget - spent)
                spent += use
                current_left -= use
                if current_left <= 1e-12:
                    finish = now + spent / busy
                    res.core_s += current.core_s
                    if current.deadline_s is None or finish <= current.deadline_s:
                        done_ids.add(current.job_id)
                        res.value += current.value
                        res.jobs_done += 1
                    current = None
        # the executor is busy only while it has work
        actual_busy = spent / dt_s
        state = plant.step(dt_s, busy_cores=actual_busy)
        # expire queued jobs past their deadline (and a running one)
        for jid in [jid for jid, j in queue.items() if j.deadline_s is not None and j.deadline_s <= t_end]:
            del queue[jid]
        tally.observe(now, dt_s, channel_values(state))  # score the limits over the step
        res.min_soc = min(res.min_soc, state.soc)
        res.max_board_c = max(res.max_board_c, state.board_c)
        res.max_radiator_c = max(res.max_radiator_c, state.radiator_c)
        if k % trace_every == 0:
            res.trace_t.append(state.t_s)
            res.trace_soc.append(state.soc)
            res.trace_board.append(state.board_c)
            res.trace_radiator.append(state.radiator_c)
            res.trace_busy.append(actual_busy)
    res.violation_s, res.violation_by_limit = tally.violation_s, dict(tally.by_limit)
    # deadline misses: jobs with a deadline inside the run that did not finish in time
    t_stop = plant.t_s
    res.deadline_misses = sum(
        1 for j in jobs if j.deadline_s is not None and j.deadline_s <= t_stop and j.job_id not in done_ids
    )
    return res


def optimal_plan(plant: Plant, duration_s: float, dt_s: float, limits: Limits,
                 jobs: list[SimJob] | None = None) -> Plan:
    """Solve the offline optimum for ``plant`` from its current state (workload-aware if ``jobs``)."""
    return solve(plan_inputs_for(plant, duration_s, dt_s, limits, jobs=jobs))
