"""Physical constants of the plant models, with their sources.

Sources: /work/shared/reference/physics.md (called "physics.md" below), which cites Vallado,
*Fundamentals of Astrodynamics and Applications* (Algorithm 34, conical shadow), the Astronomical
Almanac (low-precision Sun), Kopp & Lean 2011 (total solar irradiance) and CODATA (sigma).
"""

from __future__ import annotations

import math

MU_EARTH_KM3_S2 = 398600.4418
"""Earth's gravitational parameter, km^3/s^2 (physics.md, WGS-84)."""

R_EARTH_KM = 6378.137
"""Earth's equatorial radius, km (physics.md, WGS-84)."""

J2 = 1.08262668e-3
"""Earth's second zonal harmonic (WGS-84), dimensionless; used for the nodal drift of a circular orbit."""

AU_KM = 149_597_870.7
"""Astronomical unit, km (IAU 2012)."""

SOLAR_CONSTANT_W_M2 = 1360.8
"""Total solar irradiance at 1 AU, W/m^2: 1360.8 +/- 0.5 (Kopp & Lean 2011, physics.md). Scenarios may
round it to 1361 W/m^2 as the issue does."""

SIGMA_W_M2_K4 = 5.670374e-8
"""Stefan-Boltzmann constant, W/(m^2 K^4) (CODATA 2018, physics.md)."""

ALPHA_UMBRA_RAD = math.radians(0.264121687)
"""Half-angle of the umbra cone, rad (Vallado Algorithm 34, physics.md)."""

ALPHA_PENUMBRA_RAD = math.radians(0.269007205)
"""Half-angle of the penumbra cone, rad (Vallado Algorithm 34, physics.md)."""

ZERO_C_K = 273.15
"""0 °C in K."""

J2000_JD = 2451545.0
"""Julian date of J2000.0 (2000-01-01 12:00 TT); the Almanac's n = JD - 2451545.0."""

WGS84_FLATTENING = 1.0 / 298.257223563
"""Flattening of the WGS-84 ellipsoid (NIMA TR8350.2); with R_EARTH_KM it places ground stations."""

EARTH_ROTATION_RAD_S = 7.292115e-5
"""Earth's rotation rate relative to the stars, rad/s (WGS-84, NIMA TR8350.2). The contact plan turns the
Earth with the IAU-82 GMST polynomial (Vallado eq. 3-47), whose rate is this to 1e-12 rad/s."""

C_KM_S = 299_792.458
"""Speed of light in vacuum, km/s (exact, SI)."""
