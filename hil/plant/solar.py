"""Solar array power: P = S * eta * A * cos(theta) * packing * degradation (physics.md).

Cells: triple-junction (Spectrolab XTJ class) 29.8% at beginning of life (AM0, 28 °C); 0.89 / 0.84 of
the power remains after 5e14 / 1e15 1-MeV e-/cm^2 (physics.md). Shunted power (what neither the loads
nor the battery can take) stays on the array: a sequential shunt regulator moves strings off their
maximum-power point, so it does not heat the spacecraft body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hil.plant.constants import SOLAR_CONSTANT_W_M2

Pointing = Literal["tracking", "zenith", "fixed"]


@dataclass(frozen=True)
class SolarArray:
    """``area_m2`` of cells in ``strings`` equal strings.

    ``pointing``: "tracking" (normal on the Sun, cos theta = 1), "zenith" (body-fixed, normal along the
    local vertical: cos theta = max(0, r_hat . s_hat)), or "fixed" (constant ``cosine_factor``, e.g. a
    fixed tilt). ``cosine_factor`` multiplies all three. Efficiency, packing and degradation are 0..1.
    """

    area_m2: float
    efficiency: float = 0.298
    packing_factor: float = 0.85
    degradation: float = 1.0
    pointing: Pointing = "tracking"
    cosine_factor: float = 1.0
    strings: int = 1

    def __post_init__(self) -> None:
        if self.pointing not in ("tracking", "zenith", "fixed"):
            raise ValueError(f"unknown array pointing {self.pointing!r}")
        if self.area_m2 < 0 or self.strings < 1:
            raise ValueError("array area must be >= 0 and strings >= 1")

    @property
    def w_per_w_m2(self) -> float:
        """Electrical W per W/m^2 of sunlight on the array, all strings healthy, cos theta = 1."""
        return self.area_m2 * self.efficiency * self.packing_factor * self.degradation * self.cosine_factor

    def peak_w(self, solar_constant_w_m2: float = SOLAR_CONSTANT_W_M2) -> float:
        """Power at normal incidence in full Sun, all strings healthy, W."""
        return self.w_per_w_m2 * solar_constant_w_m2

    def power_w(self, sun_w_m2: float, zenith_sun_w_m2: float, strings_lost: int = 0) -> float:
        """Electrical power available, W. ``sun_w_m2`` = illumination fraction * irradiance;
        ``zenith_sun_w_m2`` = the same times max(0, cos zenith angle) (used by "zenith" pointing)."""
        flux = zenith_sun_w_m2 if self.pointing == "zenith" else sun_w_m2
        healthy = max(self.strings - strings_lost, 0) / self.strings
        return self.w_per_w_m2 * flux * healthy
