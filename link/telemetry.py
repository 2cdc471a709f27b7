"""The telemetry dictionary: every channel published on ``tlm/<channel>``, its values with their
units and meanings, and the governor's mode codes; the one home of the telemetry contract.

Code names channels and values by the constants below (``POWER``, ``SOC``, ``BOARD_C``, ...), never
by bare strings; :data:`CHANNELS` holds each :class:`Channel` with its measurements in the order
their publisher writes them on the wire; docs/icd.md's telemetry table is generated from it
(``python -m ground.icd docs/icd.md``, checked by tests/test_telemetry_dictionary.py). The plant
simulator publishes the plant channels (:data:`PLANT_CHANNELS`, ``hil.plant.telemetry``) and its
time tone on ``clock`` (``hil.plant_service``), flightd the ``compute`` channel (:func:`compute_values`).

Units: ``V``, ``A``, ``W``, ``Wh``, ``°C``, ``deg``, ``s``; ``fraction`` (0..1), ``flag`` (0 or 1),
``count``, ``cores`` (busy cores, 0..n), ``code`` (an enumeration given in the description), ``s/s``
(simulated seconds per wall-clock second). Every value travels as a number
(``link.messages.Telemetry.values``).
"""

from __future__ import annotations

from dataclasses import dataclass

from link.messages import Mode

# ------------------------------------------------------------------------------------- channels

POWER = "power"
THERMAL = "thermal"
ORBIT = "orbit"
COMPUTE = "compute"
CLOCK = "clock"

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

# ------------------------------------------------------------------------------------- modes

MODE_CODES: dict[Mode, int] = {Mode.NOMINAL: 0, Mode.THROTTLED: 1, Mode.SAFE: 2}
"""``compute.mode_code`` of each governor mode."""

_MODE_BY_CODE: dict[int, Mode] = {code: mode for mode, code in MODE_CODES.items()}


def mode_from_code(code: float) -> Mode | None:
    """The mode a ``mode_code`` value stands for (truncated to an integer); None for an unknown code."""
    return _MODE_BY_CODE.get(int(code))


# ------------------------------------------------------------------------------------- dictionary


@dataclass(frozen=True)
class Measurement:
    """One value of a channel: its ``key`` in ``Telemetry.values``, ``unit`` and a short meaning."""

    key: str
    unit: str
    description: str


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
            Measurement(SOC, "fraction", "battery state of charge"),
            Measurement(BATTERY_V, "V", "battery terminal voltage"),
            Measurement(BATTERY_A, "A", "battery current, + discharging"),
            Measurement(BATTERY_WH, "Wh", "energy stored in the battery"),
            Measurement(SOLAR_W, "W", "power the solar array can deliver (before shunting)"),
            Measurement(LOAD_W, "W", "load served: bus + compute"),
            Measurement(BUS_W, "W", "platform bus load (avionics, ADCS, radio)"),
            Measurement(COMPUTE_W, "W", "compute board power, idle included"),
            Measurement(SUNLIT, "flag", "1 in sunlight, 0 in eclipse"),
            Measurement(SHUNT_W, "W", "solar power neither the loads nor the battery took"),
            Measurement(UNSERVED_W, "W", "load the power system could not serve (> 0: brownout)"),
            Measurement(BUSY_CORES, "cores", "compute load the power system is serving"),
        )),
        Channel(THERMAL, "plant / sensors", (
            Measurement(BOARD_C, "°C", "compute board temperature"),
            Measurement(RADIATOR_C, "°C", "radiator temperature"),
        )),
        Channel(ORBIT, "plant / ADCS", (
            Measurement(SUNLIT, "flag", "1 in sunlight, 0 in eclipse"),
            Measurement(BETA_DEG, "deg", "beta angle: the Sun's elevation above the orbit plane"),
            Measurement(PERIOD_S, "s", "orbital period"),
            Measurement(ECLIPSE_FRACTION, "fraction", "share of the current orbit in eclipse (from its geometry)"),
            Measurement(T_ORBIT_S, "s", "time since the last eclipse exit"),
            Measurement(ILLUMINATION, "fraction", "share of the Sun's disc visible (penumbra between 0 and 1)"),
        )),
        Channel(COMPUTE, "flightd", (
            Measurement(BUSY_CORES, "cores", "executor busy cores, averaged over the last control cycle"),
            Measurement(RUNNING, "count", "jobs running"),
            Measurement(QUEUED, "count", "jobs queued"),
            Measurement(JOBS_DONE, "count", "jobs finished since flightd started"),
            Measurement(CONCURRENCY, "count", "jobs the executor may run at once"),
            Measurement(INTRA_OP_THREADS, "count", "ONNX Runtime intra-op threads per job"),
            Measurement(DUTY_CYCLE, "fraction", "share of time the executor may run"),
            Measurement(MODE_CODE, "code", f"governor mode: {_mode_codes()}"),
            Measurement(BUDGET_W, "W", "board power budget, idle included (only with a governor)"),
        )),
        Channel(CLOCK, "plant simulator (time tone; never in flight)", (
            Measurement(RATE, "s/s", "simulated seconds per wall second the simulator is paced at; t_s is "
                        "its simulated time, which flightd's mission clock follows (docs/sil.md)"),
        )),
    )
}
"""Every telemetry channel by name."""

PLANT_CHANNELS: tuple[str, ...] = (POWER, THERMAL, ORBIT)
"""The channels the plant (power system, sensors, ADCS; the simulator under ``hil``) publishes."""


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

