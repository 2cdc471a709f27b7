"""Where a ground station is and where it sees a satellite: Earth rotation, geodetic sites, look angles.

Frames. SGP4 gives positions in TEME (true equator, mean equinox). The Earth-fixed frame used here is
the pseudo Earth-fixed frame PEF: r_PEF = R3(theta_GMST) r_TEME (Vallado, Crawford, Hujsak & Kelso,
"Revisiting Spacetrack Report #3", AIAA 2006-6753, section on TEME), leaving out polar motion (about
10 m) and taking UT1 = UTC (|UT1 - UTC| < 0.9 s: at most 0.4 km of ground-track error at the equator).
Called ECEF below.

Formulae (Vallado, *Fundamentals of Astrodynamics and Applications*, 4th ed.):

* GMST, IAU-82 (eq. 3-47), T = UT1 Julian centuries since J2000.0:
  theta = 67310.54841 s + (876600 h + 8640184.812866 s) T + 0.093104 s T^2 - 6.2e-6 s T^3, in time
  seconds (1 s = 1/240 deg). Checked against Example 3-5 (1992-08-20 12:14 UT1 -> 152.578787810 deg) and
  against python-sgp4's ``gstime``.
* Geodetic site on the WGS-84 ellipsoid (Algorithm 51, Example 7-1): C = R / sqrt(1 - e^2 sin^2 phi),
  S = C (1 - e^2); r = ((C + h) cos phi cos lambda, (C + h) cos phi sin lambda, (S + h) sin phi).
* Look angles from the range vector rho = r_sat - r_site resolved on the site's local east, north and
  up (geodetic normal) axes: elevation = asin(rho_up / |rho|), azimuth = atan2(rho_east, rho_north)
  measured from north through east.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hil.plant.constants import R_EARTH_KM, WGS84_FLATTENING

FloatArray = npt.NDArray[np.float64]

E2 = WGS84_FLATTENING * (2.0 - WGS84_FLATTENING)
"""First eccentricity squared of the WGS-84 ellipsoid, e^2 = f (2 - f) (about 0.00669438)."""

SECONDS_PER_DAY = 86400.0


def gmst_rad(ut1_days_j2000: npt.ArrayLike) -> FloatArray:
    """Greenwich mean sidereal time, rad in [0, 2 pi), at UT1 days since J2000.0 (JD - 2451545.0).

    IAU-82 (Vallado eq. 3-47). Days rather than Julian dates keep float64 resolution near 1 us.
    """
    d = np.asarray(ut1_days_j2000, dtype=np.float64)
    t = d / 36525.0
    seconds = 67310.54841 + (876600.0 * 3600.0 + 8640184.812866) * t + 0.093104 * t**2 - 6.2e-6 * t**3
    return np.asarray(np.mod(np.radians(np.mod(seconds, SECONDS_PER_DAY) / 240.0), 2.0 * math.pi))


def teme_to_ecef(r_teme_km: FloatArray, gmst: FloatArray) -> FloatArray:
    """Rotate positions (n, 3) km from TEME into the Earth-fixed frame: r = R3(gmst) r_TEME."""
    r = np.asarray(r_teme_km, dtype=np.float64)
    c, s = np.cos(gmst), np.sin(gmst)
    return np.stack([c * r[..., 0] + s * r[..., 1], -s * r[..., 0] + c * r[..., 1], r[..., 2]], axis=-1)


@dataclass(frozen=True)
class LookAngles:
    """What a station sees at n instants: azimuth (deg from north through east, [0, 360)), elevation
    (deg above the local horizontal plane) and slant range (km)."""

    azimuth_deg: FloatArray
    elevation_deg: FloatArray
    range_km: FloatArray


@dataclass(frozen=True)
class GroundStation:
    """A ground station: geodetic latitude and longitude (deg, WGS-84; east positive), altitude above
    the ellipsoid (m) and the elevation mask (deg) below which it cannot close the link.

    Raises ValueError for a latitude outside [-90, 90], a longitude outside [-180, 360) or a mask
    outside [0, 90).
    """

    name: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0
    elevation_mask_deg: float = 10.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a ground station needs a name")
        if not -90.0 <= self.latitude_deg <= 90.0:
            raise ValueError(f"station {self.name!r}: latitude {self.latitude_deg} deg outside [-90, 90]")
        if not -180.0 <= self.longitude_deg < 360.0:
            raise ValueError(f"station {self.name!r}: longitude {self.longitude_deg} deg outside [-180, 360)")
        if not 0.0 <= self.elevation_mask_deg < 90.0:
            raise ValueError(f"station {self.name!r}: elevation mask {self.elevation_mask_deg} deg outside [0, 90)")

    @property
    def ecef_km(self) -> FloatArray:
        """Position (3,) km in the Earth-fixed frame (Vallado Algorithm 51)."""
        phi, lam = math.radians(self.latitude_deg), math.radians(self.longitude_deg)
        h = self.altitude_m / 1000.0
        c = R_EARTH_KM / math.sqrt(1.0 - E2 * math.sin(phi) ** 2)
        s = c * (1.0 - E2)
        return np.array(
            [(c + h) * math.cos(phi) * math.cos(lam), (c + h) * math.cos(phi) * math.sin(lam), (s + h) * math.sin(phi)]
        )

    @property
    def enu_axes(self) -> FloatArray:
        """Rows: unit vectors east, north, up (geodetic normal) of the site in the Earth-fixed frame."""
        phi, lam = math.radians(self.latitude_deg), math.radians(self.longitude_deg)
        sp, cp, sl, cl = math.sin(phi), math.cos(phi), math.sin(lam), math.cos(lam)
        return np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp], [cp * cl, cp * sl, sp]])

    def look_angles(self, r_ecef_km: FloatArray) -> LookAngles:
        """Azimuth, elevation and range of satellite positions (n, 3) km, Earth-fixed."""
        rho = np.asarray(r_ecef_km, dtype=np.float64) - self.ecef_km
        enu = rho @ self.enu_axes.T
        rng = np.linalg.norm(rho, axis=-1)
        el = np.degrees(np.arcsin(np.clip(enu[..., 2] / rng, -1.0, 1.0)))
        az = np.mod(np.degrees(np.arctan2(enu[..., 0], enu[..., 1])), 360.0)
        return LookAngles(az, el, rng)

    def elevation_deg(self, r_ecef_km: FloatArray) -> FloatArray:
        """Elevation (deg) of satellite positions (n, 3) km, Earth-fixed."""
        return self.look_angles(r_ecef_km).elevation_deg
