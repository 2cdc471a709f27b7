"""Sun position: the Astronomical Almanac's low-precision formulae (about 0.01 deg, 1950-2050).

With n = JD - 2451545.0 (physics.md):
    L = 280.460 + 0.9856474 n;  g = 357.528 + 0.9856003 n                       (deg)
    lambda = L + 1.915 sin g + 0.020 sin 2g;  eps = 23.439 - 4e-7 n               (deg)
    R = 1.00014 - 0.01671 cos g - 0.00014 cos 2g                                  (AU)
    RA = atan2(cos eps sin lambda, cos lambda);  dec = asin(sin eps sin lambda)
The unit vector (cos lambda, cos eps sin lambda, sin eps sin lambda) is in the mean equator and
equinox of date, which differs negligibly from TEME for shadow geometry. Vectorised over ``jd``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hil.plant.constants import J2000_JD

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SunPosition:
    """Sun direction and distance at each requested instant.

    ``unit`` (n, 3): unit vector Earth -> Sun, equatorial frame of date; ``distance_au`` (n,);
    ``ra_deg`` in [0, 360), ``dec_deg`` in [-90, 90], ``ecliptic_longitude_deg`` in [0, 360).
    """

    unit: FloatArray
    distance_au: FloatArray
    ra_deg: FloatArray
    dec_deg: FloatArray
    ecliptic_longitude_deg: FloatArray


def sun_position(jd: npt.ArrayLike) -> SunPosition:
    """Almanac low-precision Sun at Julian dates ``jd`` (UT; the TT-UT difference is below the accuracy)."""
    jd_arr = np.atleast_1d(np.asarray(jd, dtype=np.float64))
    n = jd_arr - J2000_JD
    mean_lon = np.mod(280.460 + 0.9856474 * n, 360.0)
    g = np.radians(np.mod(357.528 + 0.9856003 * n, 360.0))
    lam_deg = np.mod(mean_lon + 1.915 * np.sin(g) + 0.020 * np.sin(2.0 * g), 360.0)
    lam = np.radians(lam_deg)
    eps = np.radians(23.439 - 4.0e-7 * n)
    dist = 1.00014 - 0.01671 * np.cos(g) - 0.00014 * np.cos(2.0 * g)
    x = np.cos(lam)
    y = np.cos(eps) * np.sin(lam)
    z = np.sin(eps) * np.sin(lam)
    ra = np.mod(np.degrees(np.arctan2(y, x)), 360.0)
    dec = np.degrees(np.arcsin(z))
    return SunPosition(np.stack([x, y, z], axis=-1), dist, ra, dec, lam_deg)
