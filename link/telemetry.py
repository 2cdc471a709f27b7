"""The telemetry dictionary: every channel published on ``tlm/<channel>``, its values with their
units and meanings, and the governor's mode codes; the one home of the telemetry contract.

Code names channels and values by the constants below (``POWER``, ``SOC``, ``BOARD_C``, ...), never
by bare strings; :data:`CHANNELS` holds each :class:`Channel` with its measurements in the order
their publisher writes them on the wire; docs/icd.md's telemetry table is generated from it
(``python -m ground.icd docs/icd.md``, checked by tests/test_telemetry_dictionary.py). The plant
simulator publishes the plant channels (:data:`PLANT_CHANNELS`, ``hil.plant.telemetry``), the
radiation environment on ``radiation`` and its time tone on ``clock`` (``hil.plant_service``), flightd
the ``compute`` channel (:func:`compute_values`) and its soft-error counters on ``soft_errors``
(:data:`FLIGHTD_CHANNELS`; docs/radiation.md), and the ``board`` channel (what its board's own sensors
read, :meth:`flight.board.BoardSample.values`; a value the board does not measure is left out).

Units: ``V``, ``A``, ``W``, ``Wh``, ``°C``, ``deg``, ``s``, ``nT`` (magnetic field), ``GV`` (rigidity),
``R_E`` (Earth radii), ``bytes``; ``fraction`` (0..1), ``flag`` (0 or 1), ``count``, ``cores`` (busy
cores, 0..n), ``code`` (an enumeration given in the description), ``s/s`` (simulated seconds per
wall-clock second), ``ratio`` (a dimensionless quantity that may exceed 1), ``/Mbit/day`` (events per
10^6 bits per day). Every value travels as a number (``link.messages.Telemetry.values``).

Physical ranges: every measurement has the range a real value can take (:attr:`Measurement.low`,
:attr:`Measurement.high`, inclusive): a state of charge or a flag outside 0..1, a temperature below
absolute zero (-273.15 °C), a negative power, energy, voltage, count or period, a beta angle beyond
±90°, an orbital period shorter than a grazing orbit's cannot be measured. :func:`value_problem` says
what is wrong with a value (non-finite or out of range): the link refuses such a sample
(:class:`link.messages.Telemetry`) and the governor's limits count it as failing, never as passing.
Values a channel does not define only have to be finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from link.str_enum import StrEnum

# ------------------------------------------------------------------------------------- channels

POWER = "power"
THERMAL = "thermal"
ORBIT = "orbit"
COMPUTE = "compute"
CLOCK = "clock"
BOARD = "board"
RADIATION = "radiation"
SOFT_ERRORS = "soft_errors"

# ------------------------------------------------------------------------------------- values

SOC = "soc"
BATTERY_V = "battery_v"
BATTERY_A = "battery_a"
BATTERY_WH = "battery_wh"
SOLAR_W = "solar_w"
LOAD_W = "load_w"
BUS_W = "bus_w"
COMPUTE_W = "compute_w"
SUNLIT = "sunlit"
SHUNT_W = "shunt_w"
UNSERVED_W = "unserved_w"
BUSY_CORES = "busy_cores"
BOARD_C = "board_c"
RADIATOR_C = "radiator_c"
BETA_DEG = "beta_deg"
PERIOD_S = "period_s"
ECLIPSE_FRACTION = "eclipse_fraction"
T_ORBIT_S = "t_orbit_s"
ILLUMINATION = "illumination"
RUNNING = "running"
QUEUED = "queued"
JOBS_DONE = "jobs_done"
CONCURRENCY = "concurrency"
INTRA_OP_THREADS = "intra_op_threads"
DUTY_CYCLE = "duty_cycle"
BUDGET_W = "budget_w"
MODE_CODE = "mode_code"
RATE = "rate"
MET_S = "met_s"
TEMP_C = "temp_c"
POWER_W = "power_w"
UNDER_VOLTAGE = "under_voltage"
THROTTLED = "throttled"
B_NT = "b_nt"
L_SHELL = "l_shell"
CUTOFF_GV = "cutoff_gv"
FLUX = "flux"
UPSET_RATE = "upset_rate_per_mbit_day"
WEIGHT_BYTES = "weight_bytes"
SCRUB_CPU = "scrub_cpu"
SCRUB_CPU_S = "scrub_cpu_s"
BLOCKS_CORRUPT = "blocks_corrupt"
BITS_REPAIRED = "bits_repaired"
REPAIRS_FAILED = "repairs_failed"
SUSPECT_JOBS = "suspect_jobs"
RERUNS_CHANGED = "reruns_changed"
CHECKED_JOBS = "checked_jobs"
MISMATCHES = "mismatches"
UNRESOLVED = "unresolved"
FIRST_RUN_CORE_S = "first_run_core_s"
REDUNDANT_CORE_S = "redundant_core_s"
STORED_CORRUPT = "stored_corrupt"
INJECTED_WEIGHT_BITS = "injected_weight_bits"
INJECTED_RUN_FAULTS = "injected_run_faults"
RUN_FAULTS_CHANGED = "run_faults_changed"
RUN_FAULTS_DETECTED = "run_faults_detected"
RUN_FAULTS_ESCAPED = "run_faults_escaped"

# ------------------------------------------------------------------------------------- modes


class Mode(StrEnum):
    """Governor mode (see docs/governor.md); ``compute.mode_code`` carries it as :data:`MODE_CODES`."""

    NOMINAL = "nominal"
    THROTTLED = "throttled"
    SAFE = "safe"


MODE_CODES: dict[Mode, int] = {Mode.NOMINAL: 0, Mode.THROTTLED: 1, Mode.SAFE: 2}
"""``compute.mode_code`` of each governor mode."""

_MODE_BY_CODE: dict[int, Mode] = {code: mode for mode, code in MODE_CODES.items()}


def mode_from_code(code: float) -> Mode | None:
    """The mode a ``mode_code`` value stands for (truncated to an integer); None for an unknown code."""
    return _MODE_BY_CODE.get(int(code))


# ------------------------------------------------------------------------------------- dictionary


ABSOLUTE_ZERO_C = -273.15
"""0 K in °C: no temperature is lower."""
RANGE_TOLERANCE = 1e-9
"""Relative slack at a range's ends (of ``max(1, |bound|)``): floating-point rounding in the publisher's
arithmetic (an illumination of 1.0000000000000304) is not an impossible reading."""
MIN_PERIOD_S = 5069.0
"""Period of a circular orbit at the Earth's equatorial radius, 2*pi*sqrt(R^3/mu) with R = 6378.137 km
and mu = 398600.4418 km^3/s^2 (/work/shared/reference/physics.md, "Orbit"): no Earth orbit is shorter."""


@dataclass(frozen=True)
class Measurement:
    """One value of a channel: its ``key`` in ``Telemetry.values``, ``unit``, a short meaning and the
    physical range ``low``..``high`` (inclusive, with :data:`RANGE_TOLERANCE`; None: unbounded on that
    side)."""

    key: str
    unit: str
    description: str
    low: float | None = None
    high: float | None = None

    @property
    def range_text(self) -> str:
        """The physical range as docs/icd.md writes it: ``0..1``, ``>= -273.15``, ``any``."""
        if self.low is not None and self.high is not None:
            return f"{self.low:g}..{self.high:g}"
        if self.low is not None:
            return f">= {self.low:g}"
        if self.high is not None:
            return f"<= {self.high:g}"
        return "any"

    @cached_property  # read for every value of every sample flightd takes in (twice): computed once
    def bounds(self) -> tuple[float, float]:
        """(lowest, highest) value that can be a reading, :data:`RANGE_TOLERANCE` included; infinite on
        an unbounded side."""
        low = -math.inf if self.low is None else self.low - RANGE_TOLERANCE * max(1.0, abs(self.low))
        high = math.inf if self.high is None else self.high + RANGE_TOLERANCE * max(1.0, abs(self.high))
        return low, high

    def readable(self, value: float) -> bool:
        """True where ``value`` can be a reading: finite and within :attr:`bounds`. Elementwise on a
        numpy array (the fleet simulator's arrays of satellites), a numpy bool for a number."""
        low, high = self.bounds
        ok: bool = np.isfinite(value) & (value >= low) & (value <= high)
        return ok

    def problem(self, value: float) -> str | None:
        """None if ``value`` can be a real reading of this measurement, else what is wrong with it."""
        if not math.isfinite(value):
            return f"{self.key} is {value}: not a finite number"
        low, high = self.bounds  # readable() for one number, without numpy's scalar overhead
        if not low <= value <= high:
            return f"{self.key} = {value!r} {self.unit} is outside its physical range {self.range_text}"
        return None


@dataclass(frozen=True)
class Channel:
    """One telemetry channel: ``name`` (``tlm/<name>``), who publishes it, its measurements in wire
    order."""

    name: str
    source: str
    measurements: tuple[Measurement, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.measurements)

    def measurement(self, key: str) -> Measurement:
        """The measurement ``key``; KeyError naming the channel's keys when it has none."""
        for m in self.measurements:
            if m.key == key:
                return m
        raise KeyError(f"channel {self.name} has no value {key!r} (it has {', '.join(self.keys)})")


def _mode_codes() -> str:
    return ", ".join(f"{code} {mode.value}" for mode, code in MODE_CODES.items())


CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel(POWER, "plant / power system", (
            Measurement(SOC, "fraction", "battery state of charge", low=0.0, high=1.0),
            Measurement(BATTERY_V, "V", "battery terminal voltage", low=0.0),
            Measurement(BATTERY_A, "A", "battery current, + discharging"),
            Measurement(BATTERY_WH, "Wh", "energy stored in the battery", low=0.0),
            Measurement(SOLAR_W, "W", "power the solar array can deliver (before shunting)", low=0.0),
            Measurement(LOAD_W, "W", "load served: bus + compute", low=0.0),
            Measurement(BUS_W, "W", "platform bus load (avionics, ADCS, radio)", low=0.0),
            Measurement(COMPUTE_W, "W", "compute board power, idle included", low=0.0),
            Measurement(SUNLIT, "flag", "1 in sunlight, 0 in eclipse", low=0.0, high=1.0),
            Measurement(SHUNT_W, "W", "solar power neither the loads nor the battery took", low=0.0),
            Measurement(UNSERVED_W, "W", "load the power system could not serve (> 0: brownout)", low=0.0),
            Measurement(BUSY_CORES, "cores", "compute load the power system is serving", low=0.0),
        )),
        Channel(THERMAL, "plant / sensors", (
            Measurement(BOARD_C, "°C", "compute board temperature", low=ABSOLUTE_ZERO_C),
            Measurement(RADIATOR_C, "°C", "radiator temperature", low=ABSOLUTE_ZERO_C),
        )),
        Channel(ORBIT, "plant / ADCS", (
            Measurement(SUNLIT, "flag", "1 in sunlight, 0 in eclipse", low=0.0, high=1.0),
            Measurement(BETA_DEG, "deg", "beta angle: the Sun's elevation above the orbit plane",
                        low=-90.0, high=90.0),
            Measurement(PERIOD_S, "s", "orbital period", low=MIN_PERIOD_S),
            Measurement(ECLIPSE_FRACTION, "fraction", "share of the current orbit in eclipse (from its geometry)",
                        low=0.0, high=1.0),
            Measurement(T_ORBIT_S, "s", "time since the last eclipse exit", low=0.0),
            Measurement(ILLUMINATION, "fraction", "share of the Sun's disc visible (penumbra between 0 and 1)",
                        low=0.0, high=1.0),
        )),
        Channel(COMPUTE, "flightd", (
            Measurement(BUSY_CORES, "cores", "executor busy cores, averaged over the last control cycle", low=0.0),
            Measurement(RUNNING, "count", "jobs running", low=0.0),
            Measurement(QUEUED, "count", "jobs queued", low=0.0),
            Measurement(JOBS_DONE, "count", "jobs finished since flightd started", low=0.0),
            Measurement(CONCURRENCY, "count", "jobs the executor may run at once", low=0.0),
            Measurement(INTRA_OP_THREADS, "count", "ONNX Runtime intra-op threads per job", low=0.0),
            Measurement(DUTY_CYCLE, "fraction", "share of time the executor may run", low=0.0, high=1.0),
            Measurement(MODE_CODE, "code", f"governor mode: {_mode_codes()}",
                        low=0.0, high=float(max(MODE_CODES.values()))),
            Measurement(BUDGET_W, "W", "board power budget, idle included (only with a governor)", low=0.0),
        )),
        Channel(BOARD, "flightd / board probes (flight/board; docs/boards.md)", (
            Measurement(TEMP_C, "°C", "the board's own temperature (Pi cpu-thermal, Jetson tj-thermal, x86 package)",
                        low=ABSOLUTE_ZERO_C),
            Measurement(POWER_W, "W", "board power measured by its own sensor (Jetson INA3221, Pi 5 PMIC, RAPL); "
                        "absent where the board has none", low=0.0),
            Measurement(UNDER_VOLTAGE, "flag", "1: the supply is under-voltage now (Raspberry Pi get_throttled bit 0)",
                        low=0.0, high=1.0),
            Measurement(THROTTLED, "flag", "1: the firmware runs the CPU slower than asked (Raspberry Pi "
                        "get_throttled bits 1-3)", low=0.0, high=1.0),
            Measurement(BUSY_CORES, "cores", "CPUs busy since the previous sample, every process (/proc/stat)",
                        low=0.0),
        )),
        Channel(CLOCK, "plant simulator (time tone; never in flight)", (
            Measurement(RATE, "s/s", "simulated seconds per wall second the simulator is paced at; t_s is "
                        "its simulated time, which flightd's mission clock follows (docs/sil.md)", low=0.0),
            Measurement(MET_S, "s", "mission elapsed time: the simulator's own seconds, which no clock fault "
                        "moves (t_s may jump); relative sequence delays count on it (docs/sil.md)", low=0.0),
        )),
        Channel(RADIATION, "plant / radiation environment (hil.plant.radiation; a dosimeter in flight)", (
            Measurement(B_NT, "nT", "geomagnetic field strength at the spacecraft (IGRF)", low=0.0),
            Measurement(L_SHELL, "R_E", "dipole McIlwain L shell", low=1.0),
            Measurement(CUTOFF_GV, "GV", "vertical geomagnetic cutoff rigidity (Störmer)", low=0.0),
            Measurement(FLUX, "ratio", "flux proxy: upset rate over the reference orbit's mean (1.0 = Alsat-1's "
                        "average; > 1 in the South Atlantic Anomaly)", low=0.0),
            Measurement(UPSET_RATE, "/Mbit/day", "single-event upsets per 10^6 memory bits per day here", low=0.0),
        )),
        Channel(SOFT_ERRORS, "flightd (counts since start; docs/radiation.md)", (
            Measurement(WEIGHT_BYTES, "bytes", "model weights held in flightd's memory and scrubbed, all replicas",
                        low=0.0),
            Measurement(SCRUB_CPU, "fraction", "share of one core the scrubber used since the last sample",
                        low=0.0, high=1.0),
            Measurement(SCRUB_CPU_S, "s", "CPU time spent scrubbing", low=0.0),
            Measurement(BLOCKS_CORRUPT, "count", "weight blocks the scrubber found corrupt", low=0.0),
            Measurement(BITS_REPAIRED, "count", "weight bits the scrubber restored", low=0.0),
            Measurement(REPAIRS_FAILED, "count", "repairs that failed (model file untrusted: model unloaded)",
                        low=0.0),
            Measurement(SUSPECT_JOBS, "count", "jobs run on weights later found corrupt (re-run or flagged)",
                        low=0.0),
            Measurement(RERUNS_CHANGED, "count", "re-runs whose result differed: the result was corrected", low=0.0),
            Measurement(CHECKED_JOBS, "count", "jobs run under dmr or tmr", low=0.0),
            Measurement(MISMATCHES, "count", "checked jobs whose runs disagreed (voted or unresolved)", low=0.0),
            Measurement(UNRESOLVED, "count", "checked jobs with no majority (failed, never answered)", low=0.0),
            Measurement(FIRST_RUN_CORE_S, "s", "core-seconds of every job's first run", low=0.0),
            Measurement(REDUNDANT_CORE_S, "s", "core-seconds of runs beyond a job's first (redundancy's cost)",
                        low=0.0),
            Measurement(STORED_CORRUPT, "count", "stored job inputs or results that failed their checksum",
                        low=0.0),
            Measurement(INJECTED_WEIGHT_BITS, "count", "TEST-ONLY: weight bits flipped by fault injection", low=0.0),
            Measurement(INJECTED_RUN_FAULTS, "count", "TEST-ONLY: injected run faults applied to a run", low=0.0),
            Measurement(RUN_FAULTS_CHANGED, "count", "TEST-ONLY: injected run faults that changed the run's outputs",
                        low=0.0),
            Measurement(RUN_FAULTS_DETECTED, "count", "TEST-ONLY: injected run faults a redundant run caught",
                        low=0.0),
            Measurement(RUN_FAULTS_ESCAPED, "count", "TEST-ONLY: injected run faults that changed a result "
                        "returned unchecked", low=0.0),
        )),
    )
}
"""Every telemetry channel by name."""

PLANT_CHANNELS: tuple[str, ...] = (POWER, THERMAL, ORBIT)
"""The channels the plant (power system, sensors, ADCS; the simulator under ``hil``) publishes."""

FLIGHTD_CHANNELS: tuple[str, ...] = (COMPUTE, SOFT_ERRORS, BOARD)
"""The channels flightd publishes itself: it hears them back on ``tlm/+`` and feeds them to nothing."""


_MEASUREMENTS: dict[tuple[str, str], Measurement] = {
    (c.name, m.key): m for c in CHANNELS.values() for m in c.measurements
}
"""Every measurement by (channel, key): looked up for each value of each sample taken in."""


def _measurement(channel: str, key: str) -> Measurement | None:
    return _MEASUREMENTS.get((channel, key))


def readable(channel: str, key: str, value: float) -> bool:
    """True where ``value`` can be a reading of ``key`` on ``channel`` (:meth:`Measurement.readable`;
    finite for a value the dictionary does not define). Elementwise on numpy arrays."""
    m = _measurement(channel, key)
    ok: bool = np.isfinite(value) if m is None else m.readable(value)
    return ok


def value_problem(channel: str, key: str, value: float) -> str | None:
    """None if ``value`` can be a real reading of ``key`` on ``channel``, else what is wrong with it:
    not finite, or outside the measurement's physical range. A value the dictionary does not define
    (an unknown channel or key) only has to be finite."""
    m = _measurement(channel, key)
    if m is not None:
        return m.problem(value)
    return None if math.isfinite(value) else f"{key} is {value}: not a finite number"


def unreadable_values(channel: str) -> dict[str, float]:
    """NaN for every value of ``channel`` (none for an unknown channel): what the governor is fed for a
    sample of ``channel`` the link refused, so that every limit watching the channel counts a failing
    sample and none counts a passing one."""
    known = CHANNELS.get(channel)
    return {} if known is None else dict.fromkeys(known.keys, math.nan)


def compute_values(
    *,
    busy_cores: float,
    running: int,
    queued: int,
    jobs_done: int,
    concurrency: int,
    intra_op_threads: int,
    duty_cycle: float,
    mode: Mode,
    budget_w: float | None,
) -> dict[str, float]:
    """The ``compute`` channel's values, in wire order (``budget_w`` left out when None)."""
    values = {
        BUSY_CORES: busy_cores,
        RUNNING: float(running),
        QUEUED: float(queued),
        JOBS_DONE: float(jobs_done),
        CONCURRENCY: float(concurrency),
        INTRA_OP_THREADS: float(intra_op_threads),
        DUTY_CYCLE: duty_cycle,
        MODE_CODE: float(MODE_CODES[mode]),
    }
    if budget_w is not None:
        values[BUDGET_W] = budget_w
    return values

