"""Faults a scenario injects at given mission times.

Physical faults change the plant itself (``FaultSchedule.physics_at``):
- ``emissivity_loss``: radiator emissivity set to ``emissivity`` (and absorptivity to ``absorptivity``
  if given), e.g. coating contamination;
- ``capacity_fade``: battery capacity multiplied by ``factor`` (SOC kept, stored energy drops);
- ``solar_string_loss``: ``strings`` strings of the array lost;
- ``beta_change``: the beta angle of a circular orbit becomes ``beta_deg``.
Telemetry faults change only what is published (:class:`TelemetryFaults`):
- ``dropout``: no samples on ``channel`` (all channels if None);
- ``stuck``: ``measurement`` (on ``channel``, or any channel) frozen at ``value``, or at its value
  when the fault began if ``value`` is None;
- ``noisy``: Gaussian noise of standard deviation ``sigma`` added to ``measurement``.
Each fault is active on [t_s, until_s) (until_s None: forever). When several faults of one physical
kind are active, the one that began last wins.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FaultKind = Literal["dropout", "stuck", "noisy", "emissivity_loss", "capacity_fade", "solar_string_loss", "beta_change"]
PHYSICAL_KINDS = ("emissivity_loss", "capacity_fade", "solar_string_loss", "beta_change")
TELEMETRY_KINDS = ("dropout", "stuck", "noisy")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Fault:
    """One fault; the fields a kind needs are checked at construction."""

    kind: FaultKind
    t_s: float
    until_s: float | None = None
    channel: str | None = None
    measurement: str | None = None
    value: float | None = None
    sigma: float = 0.0
    emissivity: float | None = None
    absorptivity: float | None = None
    factor: float | None = None
    strings: int | None = None
    beta_deg: float | None = None

    def __post_init__(self) -> None:
        need: dict[str, tuple[str, ...]] = {
            "stuck": ("measurement",),
            "noisy": ("measurement",),
            "emissivity_loss": ("emissivity",),
            "capacity_fade": ("factor",),
            "solar_string_loss": ("strings",),
            "beta_change": ("beta_deg",),
            "dropout": (),
        }
        if self.kind not in need:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(need)})")
        missing = [f for f in need[self.kind] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"fault {self.kind!r} at t={self.t_s} s needs {', '.join(missing)}")
        if self.until_s is not None and self.until_s <= self.t_s:
            raise ValueError(f"fault {self.kind!r}: until_s must be after t_s")

    def active(self, t_s: float) -> bool:
        return self.t_s <= t_s and (self.until_s is None or t_s < self.until_s)


@dataclass(frozen=True)
class PhysicsOverrides:
    """Plant parameters that faults change at one instant (None: the configured value)."""

    emissivity: float | None = None
    absorptivity: float | None = None
    capacity_factor: float = 1.0
    strings_lost: int = 0
    beta_deg: float | None = None


class FaultSchedule:
    """The faults of a scenario. Pure: asks only for the time."""

    def __init__(self, faults: list[Fault] | tuple[Fault, ...] = ()) -> None:
        self.faults = tuple(sorted(faults, key=lambda f: f.t_s))
        self.physical = tuple(f for f in self.faults if f.kind in PHYSICAL_KINDS)
        self.telemetry = tuple(f for f in self.faults if f.kind in TELEMETRY_KINDS)

    def change_times(self) -> list[float]:
        """Sorted times at which :meth:`physics_at` may change."""
        times = {f.t_s for f in self.physical} | {f.until_s for f in self.physical if f.until_s is not None}
        return sorted(times)

    def physics_at(self, t_s: float) -> PhysicsOverrides:
        eps = alpha = beta = None
        factor = 1.0
        strings = 0
        for f in self.physical:  # sorted by start: later starts override
            if not f.active(t_s):
                continue
            if f.kind == "emissivity_loss":
                eps, alpha = f.emissivity, f.absorptivity if f.absorptivity is not None else alpha
            elif f.kind == "capacity_fade" and f.factor is not None:
                factor = f.factor
            elif f.kind == "solar_string_loss" and f.strings is not None:
                strings = f.strings
            elif f.kind == "beta_change":
                beta = f.beta_deg
        return PhysicsOverrides(eps, alpha, factor, strings, beta)

    def beta_deg_at(self, t_s: FloatArray, default_deg: float) -> FloatArray | None:
        """Beta angle at each time (``default_deg`` where no fault applies), or None if no beta fault."""
        changes = [f for f in self.physical if f.kind == "beta_change"]
        if not changes:
            return None
        out = np.full(np.shape(t_s), default_deg, dtype=np.float64)
        for f in changes:
            mask = (t_s >= f.t_s) & ((t_s < f.until_s) if f.until_s is not None else True)
            out[mask] = f.beta_deg
        return out


class TelemetryFaults:
    """Applies dropout / stuck / noisy faults to published samples. Remembers stuck values; the noise
    comes from a seeded generator, so a run is reproducible."""

    def __init__(self, schedule: FaultSchedule, seed: int = 0) -> None:
        self.schedule = schedule
        self._rng = random.Random(seed)
        self._stuck: dict[int, float] = {}

    def apply(self, t_s: float, channel: str, values: dict[str, float]) -> dict[str, float] | None:
        """The sample as published at ``t_s``: None if dropped, else ``values`` with faults applied."""
        out = dict(values)
        for i, f in enumerate(self.schedule.telemetry):
            if not f.active(t_s) or (f.channel is not None and f.channel != channel):
                continue
            if f.kind == "dropout":
                return None
            if f.measurement not in out:
                continue
            if f.kind == "stuck":
                frozen = self._stuck.setdefault(i, out[f.measurement] if f.value is None else f.value)
                out[f.measurement] = frozen
            elif f.kind == "noisy":
                out[f.measurement] = out[f.measurement] + self._rng.gauss(0.0, f.sigma)
        return {k: v for k, v in out.items() if math.isfinite(v)}
