"""Limits as configuration, checked like the cFS Limit Checker (LC) application.

A *watchpoint* compares one telemetry measurement (``channel``/``key``) with a threshold on every
sample; an *actionpoint* trips only after ``debounce`` consecutive failing samples and, once tripped,
clears only after ``debounce`` consecutive samples back inside the hysteresis band
(``threshold + hysteresis`` for a floor, ``threshold - hysteresis`` for a ceiling). Samples between
the threshold and the edge of the band reset both counters' progress: they neither trip nor clear,
so noisy telemetry sitting at a limit cannot make the state flap.

Defaults: SoC floor 30 % (issue 5); compute-board ceiling 85 °C (Raspberry Pi hard limit, see
/work/shared/reference/physics.md "Thermal"); radiator ceiling and battery-voltage floor follow the
plant's design (hil/plant) and are overridable in :class:`flight.governor.config.GovernorConfig`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class LimitKind(enum.StrEnum):
    """``floor``: the value must stay >= threshold. ``ceiling``: the value must stay <= threshold."""

    FLOOR = "floor"
    CEILING = "ceiling"


class LimitSeverity(enum.StrEnum):
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

    def failing(self, value: float) -> bool:
        """The watchpoint: True when ``value`` is beyond the threshold."""
        return value < self.threshold if self.kind is LimitKind.FLOOR else value > self.threshold

    def recovered(self, value: float) -> bool:
        """True when ``value`` is back inside the hysteresis band (strictly on the safe side)."""
        if self.kind is LimitKind.FLOOR:
            return value >= self.threshold + self.hysteresis
        return value <= self.threshold - self.hysteresis

    def margin(self, value: float) -> float:
        """Distance from ``value`` to the threshold on the safe side (negative when failing)."""
        return value - self.threshold if self.kind is LimitKind.FLOOR else self.threshold - value


def default_limits(
    soc_floor: float = 0.30,
    battery_v_floor: float = 13.2,
    board_ceiling_c: float = 85.0,
    radiator_ceiling_c: float = 60.0,
) -> list[LimitConfig]:
    """The four hard limits of issue 5 with their hysteresis bands and debounce counts.

    ``battery_v_floor`` 13.2 V = 3.3 V/cell on a 4S NMC pack (GomSpace BP4 is 1P4S, 12-16.8 V, see
    physics.md "Power"); ``board_ceiling_c`` 85 °C is the Raspberry Pi hard limit (physics.md "Thermal").
    """
    return [
        LimitConfig(name="soc_floor", channel="power", key="soc", kind=LimitKind.FLOOR,
                    threshold=soc_floor, hysteresis=0.05, debounce=3),
        LimitConfig(name="battery_v_floor", channel="power", key="battery_v", kind=LimitKind.FLOOR,
                    threshold=battery_v_floor, hysteresis=0.4, debounce=3),
        LimitConfig(name="board_ceiling", channel="thermal", key="board_c", kind=LimitKind.CEILING,
                    threshold=board_ceiling_c, hysteresis=5.0, debounce=3),
        LimitConfig(name="radiator_ceiling", channel="thermal", key="radiator_c", kind=LimitKind.CEILING,
                    threshold=radiator_ceiling_c, hysteresis=3.0, debounce=3),
    ]


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
