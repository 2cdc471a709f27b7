"""Electrical loads: the bus baseline and the compute board (flightd's busy cores -> W)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BoardProfile:
    """Power profile of the compute payload: ``idle_w`` powered but idle, plus ``w_per_core`` per busy
    core (or GPU-equivalent), up to ``cores``. ``max_c`` is the board's temperature ceiling, °C
    (e.g. 85 °C, the Raspberry Pi hard limit, physics.md)."""

    name: str = "board"
    idle_w: float = 5.0
    w_per_core: float = 2.5
    cores: int = 4
    max_c: float = 85.0

    def compute_w(self, busy_cores: float) -> float:
        """Board power at ``busy_cores`` (time-averaged, clamped to 0..cores), W."""
        return self.idle_w + self.w_per_core * min(max(busy_cores, 0.0), float(self.cores))

    @property
    def max_w(self) -> float:
        return self.compute_w(float(self.cores))


@dataclass(frozen=True)
class LoadModel:
    """Bus baseline ``bus_w`` (avionics, ADCS, radio), plus ``eclipse_extra_w`` in shadow (survival
    heaters), scaled by (1 - illumination fraction). W."""

    bus_w: float = 10.0
    eclipse_extra_w: float = 0.0

    def bus_power_w(self, fraction: float) -> float:
        return self.bus_w + self.eclipse_extra_w * (1.0 - fraction)
