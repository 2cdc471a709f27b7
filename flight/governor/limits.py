"""Limits as configuration, checked like the cFS Limit Checker (LC) application.

A *watchpoint* compares one telemetry measurement (``channel``/``key``) with a threshold on every
sample; an *actionpoint* trips only after ``debounce`` consecutive failing samples and, once tripped,
clears only after ``debounce`` consecutive samples back inside the hysteresis band
(``threshold + hysteresis`` for a floor, ``threshold - hysteresis`` for a ceiling). Samples between
the threshold and the edge of the band reset both counters' progress: they neither trip nor clear,
so noisy telemetry sitting at a limit cannot make the state flap. A value that cannot be a reading
(not finite, or outside the physical range of the telemetry dictionary, :func:`link.telemetry.value_problem`:
a state of charge of 1.5, a temperature below absolute zero) fails every limit and recovers none, so a
hard limit fed garbage trips and sends the governor SAFE.

The thresholds themselves are one :class:`Limits` value, the single definition used by the governor
configuration (:class:`flight.governor.config.GovernorConfig`), the scenarios (``[limits]`` in
hil/scenarios/*.toml), the policy simulator, the SIL and the benches; :meth:`Limits.configs` turns
it into the governor's watchpoints. It lives here, in the board install, because flight/ may not
import hil/ (hil/ imports flight/).

Defaults (sources in /work/shared/reference/physics.md):

- SoC floor 0.30 (issue 5);
- battery-voltage floor 3.3 V per cell (:data:`CELL_V_FLOOR_V`) x 4 cells = 13.2 V: the plant's pack
  and the GomSpace BP4 are 4S NMC, 3.0-4.2 V per cell ("Power"), so the floor sits 0.3 V/cell above
  the cells' cut-off;
- compute-board ceiling 85 °C: the Raspberry Pi hard limit ("Thermal");
- radiator ceiling 70 °C: the plant's design value (hil/scenarios ``[limits]``, docs/plant.md).
  physics.md gives no radiator limit (its only 60 °C is the Pi 3B+ *board* soft limit, the figure
  this default once said). At full load (82 W) the board runs 23 K above the radiator (G = 3.5 W/K),
  so it meets its own 85 °C ceiling with the radiator near 62 °C (high-beta in continuous sun:
  board 84 °C, radiator 60.5 °C): at 70 °C the board's limit binds first on a healthy spacecraft
  and the radiator's catches a radiator heating on its own (degraded-radiator); 60 °C would
  throttle a healthy spacecraft below its board limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from link.str_enum import StrEnum
from link.telemetry import (
    BATTERY_V,
    BOARD,
    BOARD_C,
    POWER,
    RADIATOR_C,
    SOC,
    THERMAL,
    THROTTLED,
    UNDER_VOLTAGE,
    readable,
)


class LimitKind(StrEnum):
    """``floor``: the value must stay >= threshold. ``ceiling``: the value must stay <= threshold."""

    FLOOR = "floor"
    CEILING = "ceiling"


class LimitSeverity(StrEnum):
    """``hard``: a tripped limit puts the governor in SAFE. ``soft``: THROTTLED (a warning level)."""

    HARD = "hard"
    SOFT = "soft"


class LimitConfig(BaseModel):
    """One watchpoint + actionpoint. Units are those of the measurement (``soc`` 0..1, V, °C)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    key: str = Field(min_length=1)
    kind: LimitKind
    threshold: float
    hysteresis: float = Field(gt=0.0, description="width of the recovery band, same unit as the value")
    debounce: int = Field(default=3, ge=1, description="consecutive samples to trip, and to clear")
    severity: LimitSeverity = LimitSeverity.HARD

    def readable(self, value: float) -> bool:
        """True when ``value`` can be a reading of the watched measurement (finite, in its physical
        range, :func:`link.telemetry.readable`); elementwise on numpy arrays, like the two below."""
        return readable(self.channel, self.key, value)

    def failing(self, value: float) -> bool:
        """The watchpoint: True when ``value`` is beyond the threshold, or no reading at all."""
        beyond = value < self.threshold if self.kind is LimitKind.FLOOR else value > self.threshold
        failing: bool = np.logical_or(beyond, np.logical_not(self.readable(value)))
        return failing

    def recovered(self, value: float) -> bool:
        """True when ``value`` is back inside the hysteresis band (strictly on the safe side); never for
        a value that is no reading."""
        if self.kind is LimitKind.FLOOR:
            inside = value >= self.threshold + self.hysteresis
        else:
            inside = value <= self.threshold - self.hysteresis
        recovered: bool = np.logical_and(inside, self.readable(value))
        return recovered

    def margin(self, value: float) -> float:
        """Distance from ``value`` to the threshold on the safe side (negative when failing)."""
        return value - self.threshold if self.kind is LimitKind.FLOOR else self.threshold - value


SOC_FLOOR = "soc_floor"
BATTERY_V_FLOOR = "battery_v_floor"
BOARD_CEILING = "board_ceiling"
RADIATOR_CEILING = "radiator_ceiling"
"""The governor's limit names (``LimitConfig.name``): the names a run is scored under, too."""

BOARD_THROTTLED = "board_throttled"
BOARD_UNDER_VOLTAGE = "board_under_voltage"
"""The limits on the board's own flags (``board`` channel; :func:`board_flag_limits`)."""

CELL_V_FLOOR_V = 3.3
"""Battery-voltage floor per NMC cell, V (cells 3.0-4.2 V, physics.md "Power")."""


@dataclass(frozen=True)
class Limits:
    """The spacecraft's limits, defined once (see the module docstring for the defaults' sources).

    ``soc_floor``: state of charge, 0..1; ``battery_v_floor``: pack terminal voltage, V;
    ``board_max_c`` / ``radiator_max_c``: ceilings, °C. A governor acts on them (:meth:`configs`)
    and a run is scored against them (hil/scoring.py). Raises ValueError for a SoC floor outside
    [0, 1) or a negative voltage floor.
    """

    soc_floor: float = 0.30
    battery_v_floor: float = CELL_V_FLOOR_V * 4
    board_max_c: float = 85.0
    radiator_max_c: float = 70.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.soc_floor < 1.0:
            raise ValueError(f"soc_floor {self.soc_floor} is not a fraction in [0, 1)")
        if self.battery_v_floor < 0.0:
            raise ValueError(f"battery_v_floor {self.battery_v_floor} V is negative")

    def configs(self) -> list[LimitConfig]:
        """The governor's four hard limits with their hysteresis bands and debounce counts."""
        return [
            LimitConfig(name=SOC_FLOOR, channel=POWER, key=SOC, kind=LimitKind.FLOOR,
                        threshold=self.soc_floor, hysteresis=0.05, debounce=3),
            LimitConfig(name=BATTERY_V_FLOOR, channel=POWER, key=BATTERY_V, kind=LimitKind.FLOOR,
                        threshold=self.battery_v_floor, hysteresis=0.4, debounce=3),
            LimitConfig(name=BOARD_CEILING, channel=THERMAL, key=BOARD_C, kind=LimitKind.CEILING,
                        threshold=self.board_max_c, hysteresis=5.0, debounce=3),
            LimitConfig(name=RADIATOR_CEILING, channel=THERMAL, key=RADIATOR_C, kind=LimitKind.CEILING,
                        threshold=self.radiator_max_c, hysteresis=3.0, debounce=3),
        ]


def board_flag_limits(
    throttled: LimitSeverity | None, under_voltage: LimitSeverity | None, debounce: int = 2
) -> list[LimitConfig]:
    """Limits on the board's firmware flags (``board.throttled``, ``board.under_voltage``; the
    Raspberry Pi's get_throttled bits, flight/board/raspberry_pi.py) at the given severity (None:
    not watched). A flag is 0 or 1: the limit trips on ``debounce`` samples of 1 and clears on as
    many samples of 0 (threshold 0.5, hysteresis 0.5)."""
    out: list[LimitConfig] = []
    for name, key, severity in ((BOARD_THROTTLED, THROTTLED, throttled),
                                (BOARD_UNDER_VOLTAGE, UNDER_VOLTAGE, under_voltage)):
        if severity is not None:
            out.append(LimitConfig(name=name, channel=BOARD, key=key, kind=LimitKind.CEILING, threshold=0.5,
                                   hysteresis=0.5, debounce=debounce, severity=severity))
    return out


@dataclass
class LimitState:
    """Actionpoint state of one limit."""

    tripped: bool = False
    fail_count: int = 0
    ok_count: int = 0
    last_value: float | None = None
    last_t_s: float | None = None


@dataclass(frozen=True)
class LimitTransition:
    """A limit tripped (``tripped=True``) or cleared on the sample at ``t_s``."""

    name: str
    tripped: bool
    value: float
    t_s: float
    severity: LimitSeverity

    def describe(self) -> str:
        verb = "tripped" if self.tripped else "cleared"
        return f"{self.name} {verb} at value {self.value:.4g} (t={self.t_s:.1f} s)"


class LimitChecker:
    """Runs every configured limit over incoming samples; pure (no clock: times come with samples)."""

    def __init__(self, limits: Iterable[LimitConfig]) -> None:
        self.limits: list[LimitConfig] = list(limits)
        names = [lim.name for lim in self.limits]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate limit names in {names}")
        self.state: dict[str, LimitState] = {lim.name: LimitState() for lim in self.limits}

    def observe(self, channel: str, t_s: float, values: Mapping[str, float]) -> list[LimitTransition]:
        """Feed one sample of ``channel``; return the limits that tripped or cleared on it."""
        out: list[LimitTransition] = []
        for lim in self.limits:
            if lim.channel != channel or lim.key not in values:
                continue
            value = float(values[lim.key])
            st = self.state[lim.name]
            st.last_value, st.last_t_s = value, t_s
            if not st.tripped:
                st.fail_count = st.fail_count + 1 if lim.failing(value) else 0
                if st.fail_count >= lim.debounce:
                    st.tripped, st.fail_count, st.ok_count = True, 0, 0
                    out.append(LimitTransition(lim.name, True, value, t_s, lim.severity))
            else:
                st.ok_count = st.ok_count + 1 if lim.recovered(value) else 0
                if st.ok_count >= lim.debounce:
                    st.tripped, st.fail_count, st.ok_count = False, 0, 0
                    out.append(LimitTransition(lim.name, False, value, t_s, lim.severity))
        return out

    def tripped(self, severity: LimitSeverity | None = None) -> list[str]:
        """Names of the limits currently tripped (optionally of one severity), in config order."""
        return [
            lim.name
            for lim in self.limits
            if self.state[lim.name].tripped and (severity is None or lim.severity is severity)
        ]

    def outside_bands(self) -> list[str]:
        """Hard limits that keep SAFE: tripped, never measured, or last value outside the hysteresis band.

        SAFE is left only when this is empty (issue 5: "SAFE is left only once every limit is back
        inside its hysteresis band")."""
        out: list[str] = []
        for lim in self.limits:
            if lim.severity is not LimitSeverity.HARD:
                continue
            st = self.state[lim.name]
            if st.tripped or st.last_value is None or not lim.recovered(st.last_value):
                out.append(lim.name)
        return out
