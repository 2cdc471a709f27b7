"""A measured power rail: the unit shared by the Jetson's INA3221 and the Raspberry Pi 5's PMIC."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PowerRail:
    """One rail as its sensor reports it: ``volts`` (V) and ``amps`` (A); ``watts`` is their product."""

    name: str
    volts: float
    amps: float

    @property
    def watts(self) -> float:
        return self.volts * self.amps
