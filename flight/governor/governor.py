"""The governor: pure decision code that turns telemetry into a compute allocation.

Interface (what flightd calls once per control cycle)::

    gov = Governor(GovernorConfig(...))
    decision = gov.update(now_s, samples)      # samples: new telemetry since the last call
    # apply decision.concurrency / intra_op_threads / duty_cycle to the executor;
    # if decision.preempt: terminate running jobs (RunOptions.terminate) and requeue them;
    # if decision.mode_changed: publish Event(kind=MODE, message=..., details={"reasons": decision.reasons})
    plan = gov.dispatch(now, queued_jobs, running_jobs, rate)   # which queued jobs to start / defer / reject
    gov.record_run(model, wall_s, threads, units=..., busy_core_s=..., energy_j=...)  # learn job costs
    outlook = gov.outlook(now_s)     # the orbit ahead, for a fleet dispatcher (flightd's Status.outlook)

``now_s`` is mission time on the clock of ``Telemetry.t_s`` (simulated time under the plant
simulator); there is no clock, sleep or I/O inside. ``samples`` are objects with ``channel: str``,
``t_s: float`` and ``values: Mapping[str, float]`` (``link.messages.Telemetry`` fits), in any order.
A value that cannot be a reading (not finite, or outside its physical range in the telemetry
dictionary) counts as failing for every limit watching it and is never used for the budget; a
sample with no readable value does not refresh its channel (it goes stale as if absent), and a
sample whose ``t_s`` is not finite is taken as of ``now_s``. A sample from the future (``t_s`` more
than the stale age, ``stale_periods * telemetry_period_s``, ahead of ``now_s``) cannot be right: it
counts as failing (all its values unreadable, as of ``now_s``) and is never held as the channel's
latest, so it cannot make the good samples after it look out of order and the channel stale
(issue 10 item 1, found by the fuzzing campaign). flightd feeds a sample the link
refused as all-NaN values (:func:`link.telemetry.unreadable_values`), so garbage on a hard limit's
channel trips it after its debounce count and the governor goes SAFE.

:class:`Decision` fields: ``mode`` (link.messages.Mode), ``budget_w`` (board power budget, W, idle
included), ``concurrency`` (jobs at once, >= 0), ``intra_op_threads`` (>= 1), ``duty_cycle``
(0..1, fraction of time the executor may run), ``preempt`` (stop running jobs now: True while
SAFE), ``reasons`` (why this mode/budget), ``mode_changed`` (this update changed the mode), plus
``busy_cores`` (the allowed busy cores = concurrency * threads * duty), ``binding`` (which
constraint set the budget), ``mode_code`` (0/1/2 for the ``compute`` channel) and ``redundancy`` (the
mode no job runs below now: ``config.radiation.mode`` while the ``radiation`` channel's flux proxy
exceeds ``config.radiation.high_flux``, else none; its runs are counted in admission's budget).

Mode rules (issue 5): SAFE at once on a tripped hard limit (after its debounce count) or when a
required channel is missing or older than ``stale_periods`` telemetry periods; SAFE is left only
when every hard limit is back inside its hysteresis band. THROTTLED when the predictive budget is
below ``throttle_fraction`` of full board power or a soft limit is tripped, NOMINAL otherwise, with
a minimum dwell time against flapping. See docs/governor.md for the budget math.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flight.governor.admission import Allocation, DispatchPlan, RunningJob, plan_dispatch
from flight.governor.budget import (
    EnergyState,
    OrbitEstimator,
    OrbitPhase,
    ThermalPredictor,
    energy_budget_w,
    phase_left_s,
    sustainable_busy_cores,
)
from flight.governor.config import BoardProfile, GovernorConfig
from flight.governor.costs import CostModel, ModelCost
from flight.governor.limits import (
    BATTERY_V_FLOOR,
    BOARD_CEILING,
    RADIATOR_CEILING,
    SOC_FLOOR,
    LimitChecker,
    LimitSeverity,
    LimitTransition,
)
from flight.governor.modes import ModeInputs, ModeMachine
from flight.queue_policy import QueuedJob
from link.messages import Mode, Redundancy
from link.telemetry import (
    BATTERY_V,
    BATTERY_WH,
    BOARD,
    BOARD_C,
    BUS_W,
    COMPUTE_W,
    ECLIPSE_FRACTION,
    FLUX,
    LOAD_W,
    MODE_CODES,
    ORBIT,
    PERIOD_S,
    POWER,
    RADIATION,
    RADIATOR_C,
    SOC,
    SOLAR_W,
    SUNLIT,
    T_ORBIT_S,
    TEMP_C,
    THERMAL,
    value_problem,
)


class TelemetrySampleLike(Protocol):
    @property
    def channel(self) -> str: ...
    @property
    def t_s(self) -> float: ...
    @property
    def values(self) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class Sample:
    """A plain telemetry sample (for callers without link.messages.Telemetry)."""

    channel: str
    t_s: float
    values: Mapping[str, float]


@dataclass(frozen=True)
class Outlook:
    """What the governor expects of the orbit ahead, for a fleet dispatcher (flightd copies it into its
    retained ``Status.outlook``; ground/fleet routes with it): ``in_eclipse`` and ``phase_left_s``
    (mission s to the end of this sunlit or eclipse phase, from the orbit phase the budget uses);
    ``orbit_busy_cores``, the orbit-average busy cores the power system sustains
    (:func:`flight.governor.budget.sustainable_busy_cores`: the design array peak, else the most solar
    power seen in sunlight; None before either is known); ``thermal_headroom_c``, the smaller of
    (ceiling - temperature) of board and radiator, °C (None without thermal telemetry); ``soc``, the
    latest state of charge (0..1, None without power telemetry). A query (:meth:`Governor.outlook`), not
    part of every :class:`Decision`: flightd asks for it once per heartbeat."""

    in_eclipse: bool
    phase_left_s: float
    orbit_busy_cores: float | None
    thermal_headroom_c: float | None
    soc: float | None


@dataclass(frozen=True)
class Decision:
    """One control decision (see the module docstring)."""

    mode: Mode
    budget_w: float
    concurrency: int
    intra_op_threads: int
    duty_cycle: float
    preempt: bool
    reasons: list[str]
    mode_changed: bool
    busy_cores: float = 0.0
    binding: str = ""
    limit_events: list[str] = field(default_factory=list)
    frequency_fraction: float | None = None
    power_mode: str | None = None
    redundancy: Redundancy = Redundancy.NONE

    @property
    def mode_code(self) -> int:
        return MODE_CODES[self.mode]


def _sample_time(s: TelemetrySampleLike, now_s: float) -> float:
    """A sample's mission time, ``now_s`` when it has no finite one."""
    return s.t_s if math.isfinite(s.t_s) else now_s


def allocation_for(busy_cores: float, board: BoardProfile, min_busy_cores: float) -> tuple[int, int, float]:
    """Turn allowed busy cores into (concurrency, intra_op_threads, duty_cycle).

    One job at a time with ``ceil(busy)`` intra-op threads (the measured 2-thread configuration at
    full power) and a duty cycle for the fraction: busy = concurrency * threads * duty exactly.
    """
    busy = min(float(board.n_cores), max(0.0, busy_cores))
    if busy < min_busy_cores:
        return 0, 1, 0.0
    threads = min(board.n_cores, max(1, math.ceil(busy - 1e-9)))
    return 1, threads, min(1.0, busy / threads)


class Governor:
    """Stateful but pure: all inputs come through :meth:`update`, :meth:`dispatch`, :meth:`record_run`."""

    def __init__(self, config: GovernorConfig | None = None) -> None:
        self.config = config if config is not None else GovernorConfig()
        cfg = self.config
        self.limits = LimitChecker([*cfg.limits, *cfg.board_inputs.limits()])
        self.modes = ModeMachine(min_dwell_s=cfg.mode_min_dwell_s, safe_min_dwell_s=cfg.safe_min_dwell_s)
        self.orbit_estimator = OrbitEstimator(cfg.orbit.period_s, cfg.orbit.eclipse_fraction)
        self.thermal = ThermalPredictor(cfg.thermal)
        self.costs = CostModel(cfg.board.w_per_core, alpha=cfg.cost_ema_alpha)
        self.latest: dict[str, tuple[float, dict[str, float]]] = {}
        self.started_s: float | None = None
        self.capacity_wh = cfg.battery.capacity_wh
        self.peak_solar_w = cfg.array_peak_w
        """Array power at normal incidence, W: the design's, else the most seen in sunlight."""
        self.last: Decision | None = None
        soc_lim = cfg.limit(SOC_FLOOR)
        self.soc_floor = soc_lim.threshold if soc_lim is not None else 0.30
        v_lim = cfg.limit(BATTERY_V_FLOOR)
        self.v_floor = v_lim.threshold if v_lim is not None else None
        b_lim, r_lim = cfg.limit(BOARD_CEILING), cfg.limit(RADIATOR_CEILING)
        self.board_ceiling = b_lim.threshold if b_lim is not None else math.inf
        self.radiator_ceiling = r_lim.threshold if r_lim is not None else math.inf

    # ----------------------------------------------------------------------------- inputs

    def _ingest(self, s: TelemetrySampleLike, now_s: float) -> list[LimitTransition]:
        raw = {k: float(v) for k, v in s.values.items()}
        t_s = _sample_time(s, now_s)
        if t_s > now_s + self.config.stale_periods * self.config.telemetry_period_s:
            return self.limits.observe(s.channel, now_s, {k: math.nan for k in raw})
        prev = self.latest.get(s.channel)
        if prev is not None and t_s < prev[0]:
            return []  # out of order: older than what we hold; ignore
        stand_in = self.config.board_inputs.temperature_as_board_c
        own: float | None = None
        if stand_in and s.channel == THERMAL:  # the board's own temperature is board_c: not the plant's
            raw.pop(BOARD_C, None)
            own = self.latest.get(THERMAL, (t_s, {}))[1].get(BOARD_C)
        values = {k: v for k, v in raw.items() if value_problem(s.channel, k, v) is None}
        transitions = self._board_temperature(t_s, raw) if stand_in and s.channel == BOARD else []
        if own is not None:
            values[BOARD_C] = own
        if not values:  # nothing readable: the limits count a failing sample, the channel stays as stale as it was
            return transitions + self.limits.observe(s.channel, t_s, raw)
        self.latest[s.channel] = (t_s, values)
        if SUNLIT in values:
            self.orbit_estimator.observe(t_s, values[SUNLIT] >= 0.5)
        if s.channel == POWER:
            solar = values.get(SOLAR_W)
            if self.config.array_peak_w is None and solar and values.get(SUNLIT, 0.0) >= 0.5:
                self.peak_solar_w = max(self.peak_solar_w or 0.0, solar)  # no design value: the most seen
            soc, wh = values.get(SOC), values.get(BATTERY_WH)
            if soc is not None and wh is not None and soc > 0.2:
                self.capacity_wh = wh / soc
        if s.channel == THERMAL and BOARD_C in values and RADIATOR_C in values:
            power = self.latest.get(POWER, (0.0, {}))[1]
            board_w = power.get(COMPUTE_W, self._board_w_now())
            self.thermal.observe(t_s, values[BOARD_C], values[RADIATOR_C], board_w,
                                 power.get(BUS_W, 0.0), power.get(SUNLIT, 1.0) >= 0.5)
        return transitions + self.limits.observe(s.channel, t_s, raw)

    def _board_temperature(self, t_s: float, raw: Mapping[str, float]) -> list[LimitTransition]:
        """The board's own temperature as ``thermal.board_c`` (``board_inputs.temperature_as_board_c``):
        the board ceiling counts it, and the latest thermal values carry it (at the plant's sample time
        where the plant publishes a thermal channel, so a silent plant still goes stale)."""
        if TEMP_C not in raw:
            return []
        temp = raw[TEMP_C]
        if value_problem(BOARD, TEMP_C, temp) is None:
            t_thermal, thermal = self.latest.get(THERMAL, (t_s, {}))
            self.latest[THERMAL] = (t_thermal, {**thermal, BOARD_C: temp})
        return self.limits.observe(THERMAL, t_s, {BOARD_C: temp})

    def _board_w_now(self) -> float:
        busy = self.last.busy_cores if self.last is not None else 0.0
        return self.config.board.power_w(busy)

    def _stale(self, now_s: float) -> list[str]:
        cfg = self.config
        max_age = cfg.stale_periods * cfg.telemetry_period_s
        out: list[str] = []
        for ch in cfg.required_channels:
            got = self.latest.get(ch)
            if got is None:  # never received: SAFE from the start until it arrives
                out.append(f"telemetry {ch} missing")
            elif now_s - got[0] > max_age:
                out.append(f"telemetry {ch} stale: {now_s - got[0]:.1f} s old (> {max_age:g} s)")
        return out

    def orbit_phase(self, now_s: float) -> OrbitPhase:
        got = self.latest.get(ORBIT)
        if got is not None:
            t, v = got
            if {PERIOD_S, ECLIPSE_FRACTION, T_ORBIT_S} <= v.keys() and v[PERIOD_S] > 0:
                return OrbitPhase(v[PERIOD_S], min(0.95, max(0.0, v[ECLIPSE_FRACTION])),
                                  v[T_ORBIT_S] + (now_s - t), "orbit channel")
        return self.orbit_estimator.phase(now_s)

    def redundancy_floor(self, now_s: float) -> tuple[Redundancy, str | None]:
        """(the mode no job may run below, why) from the latest fresh ``radiation`` sample."""
        policy, cfg = self.config.radiation, self.config
        got = self.latest.get(RADIATION)
        if policy.mode is Redundancy.NONE or got is None or FLUX not in got[1]:
            return Redundancy.NONE, None
        t, values = got
        if now_s - t > cfg.stale_periods * cfg.telemetry_period_s:
            return Redundancy.NONE, None
        if values[FLUX] > policy.high_flux:
            why = f"radiation: flux {values[FLUX]:.2f} > {policy.high_flux:g}: jobs run {policy.mode.value}"
            return policy.mode, why
        return Redundancy.NONE, None

    # --------------------------------------------------------------------------- budget

    def budget(self, now_s: float) -> tuple[float, str, list[str]]:
        """(board budget W before mode rules, binding constraint, explanations)."""
        cfg, board = self.config, self.config.board
        power = self.latest.get(POWER, (now_s, {}))[1]
        thermal = self.latest.get(THERMAL, (now_s, {}))[1]
        orbit = self.orbit_phase(now_s)
        candidates: list[tuple[float, str]] = [(board.max_w, "full power")]
        notes: list[str] = [f"orbit from {orbit.source}"]
        if SOC in power or BATTERY_WH in power:
            cap = self.capacity_wh
            energy = power.get(BATTERY_WH, power.get(SOC, 0.0) * cap)
            bus = power.get(BUS_W)
            if bus is None:
                bus = power.get(LOAD_W, 0.0) - power.get(COMPUTE_W, self._board_w_now())
            sunlit = power.get(SUNLIT, 1.0 if power.get(SOLAR_W, 0.0) > 0 else 0.0) >= 0.5
            state = EnergyState(energy, cap, power.get(SOLAR_W, 0.0), max(0.0, bus), sunlit)
            e_min = (self.soc_floor + cfg.soc_margin) * cap
            p_e, why = energy_budget_w(state, orbit, e_min, board.idle_w,
                                       cfg.battery.charge_efficiency, cfg.battery.discharge_efficiency,
                                       min_horizon_s=cfg.telemetry_period_s)
            candidates.append((p_e, "energy"))
            notes.append(why)
            v = power.get(BATTERY_V)
            if self.v_floor is not None and v is not None and cfg.battery_v_margin > 0:
                frac = (v - self.v_floor) / cfg.battery_v_margin
                if frac < 1.0:
                    candidates.append((board.idle_w + max(0.0, frac) * (board.max_w - board.idle_w),
                                       "battery voltage"))
        if BOARD_C in thermal and RADIATOR_C in thermal:
            bus_w = power.get(BUS_W, 0.0)
            p_t, why = self.thermal.max_power_w(
                thermal[BOARD_C], thermal[RADIATOR_C], bus_w, orbit,
                self.board_ceiling - cfg.thermal_margin_c, self.radiator_ceiling - cfg.thermal_margin_c)
            candidates.append((p_t, "thermal"))
            notes.append(why)
        p, binding = min(candidates, key=lambda c: c[0])
        return p, binding, notes

    def outlook(self, now_s: float) -> Outlook:
        """The orbit ahead as a fleet dispatcher needs it (see :class:`Outlook`)."""
        cfg, board = self.config, self.config.board
        orbit = self.orbit_phase(now_s)
        power = self.latest.get(POWER, (now_s, {}))[1]
        thermal = self.latest.get(THERMAL, (now_s, {}))[1]
        orbit_cores = None
        if self.peak_solar_w is not None:
            orbit_cores = sustainable_busy_cores(
                self.peak_solar_w, power.get(BUS_W, 0.0), board.idle_w, board.w_per_core, board.n_cores,
                cfg.battery.charge_efficiency * cfg.battery.discharge_efficiency, orbit.eclipse_fraction,
                orbit.period_s)
        headroom = None
        if BOARD_C in thermal and RADIATOR_C in thermal:
            headroom = min(self.board_ceiling - thermal[BOARD_C], self.radiator_ceiling - thermal[RADIATOR_C])
        return Outlook(in_eclipse=orbit.in_eclipse(),
                       phase_left_s=phase_left_s(orbit.t_orbit_s, orbit.period_s, orbit.eclipse_fraction),
                       orbit_busy_cores=orbit_cores, thermal_headroom_c=headroom, soc=power.get(SOC))

    # --------------------------------------------------------------------------- update

    def update(self, now_s: float, samples: Iterable[TelemetrySampleLike]) -> Decision:
        """Fold in new samples and decide for ``now_s`` (see the module docstring)."""
        cfg, board = self.config, self.config.board
        if self.started_s is None:
            self.started_s = now_s
        transitions: list[LimitTransition] = []
        for s in sorted(samples, key=lambda x: _sample_time(x, now_s)):
            transitions.extend(self._ingest(s, now_s))
        safe = [f"hard limit {n} tripped" for n in self.limits.tripped(LimitSeverity.HARD)]
        safe += self._stale(now_s)
        p, binding, notes = self.budget(now_s)
        p = min(board.max_w, max(board.idle_w, p))
        throttle: list[str] = [f"soft limit {n} tripped" for n in self.limits.tripped(LimitSeverity.SOFT)]
        if p < cfg.throttle_fraction * board.max_w:
            throttle.append(f"budget {p:.2f} W < full {board.max_w:.2f} W ({binding})")
        mode, changed, reasons = self.modes.step(
            now_s, ModeInputs(tuple(safe), tuple(self.limits.outside_bands()), tuple(throttle)))
        if mode is Mode.SAFE:
            p, binding = board.idle_w, "SAFE"
        busy = (p - board.idle_w) / board.w_per_core
        conc, threads, duty = allocation_for(busy, board, cfg.min_busy_cores)
        if mode is Mode.SAFE:
            conc, threads, duty = 0, 1, 0.0
        floor, why = self.redundancy_floor(now_s)
        if why is not None:
            notes.append(why)
        d = Decision(
            mode=mode,
            budget_w=p,
            concurrency=conc,
            intra_op_threads=threads,
            duty_cycle=duty,
            preempt=mode is Mode.SAFE,
            reasons=reasons + notes,
            mode_changed=changed,
            busy_cores=conc * threads * duty,
            binding=binding,
            limit_events=[t.describe() for t in transitions],
            frequency_fraction=cfg.actuators.frequency_fraction(mode),
            power_mode=cfg.actuators.power_modes.get(mode),
            redundancy=floor,
        )
        self.last = d
        return d

    # ------------------------------------------------------------------------ scheduling

    def allocation(self) -> Allocation:
        d, board = self.last, self.config.board
        if d is None:
            return Allocation(0, 1, 0.0, board.idle_w, board.idle_w, float(board.n_cores))
        return Allocation(d.concurrency, d.intra_op_threads, d.duty_cycle, d.budget_w, board.idle_w,
                          float(board.n_cores))

    def dispatch(
        self, now: float, queued: Iterable[QueuedJob], running: Sequence[RunningJob], rate: float = 1.0
    ) -> DispatchPlan:
        """Scheduler policy at the last decision's allocation and redundancy floor (see
        flight.governor.admission): ``now`` and the jobs on the queue's clock, ``rate`` mission seconds
        per second of it."""
        floor = self.last.redundancy if self.last is not None else Redundancy.NONE
        return plan_dispatch(now, queued, running, self.allocation(), self.costs, rate, floor)

    def record_run(self, model: str, wall_s: float, threads: int, units: float = 1.0,
                   busy_core_s: float | None = None, energy_j: float | None = None,
                   at_s: float | None = None) -> ModelCost:
        """Learn a model's cost from one measured run ended at ``at_s`` (see CostModel.observe): one
        inference, not a redundant job's several (the caller divides)."""
        return self.costs.observe(model, wall_s, threads, units, busy_core_s, energy_j, at_s)
