"""Where over the Earth the satellite is: geocentric latitude, longitude and radius at mission times.

Eclipses need only the orbit's geometry relative to the Sun (:mod:`hil.plant.orbit`); the radiation
environment needs the Earth-fixed position. Two sources:

- a circular orbit of given altitude and inclination: argument of latitude u = u0 + n t, node longitude
  lambda_node = lambda_node0 + (dOmega/dt - omega_E) t with the J2 drift dOmega/dt = -1.5 n J2 (R/a)^2 cos i
  (physics.md); lat = asin(sin i sin u), lon = lambda_node + atan2(cos i sin u, cos u);
- a TLE (:class:`hil.plant.orbit.TleOrbit`): SGP4's TEME position rotated about the pole by the Greenwich
  mean sidereal time (IAU 1982, as ``sgp4.propagation.gstime`` computes it; Vallado, *Fundamentals of
  Astrodynamics and Applications*, eq. 3-47); polar motion and the TEME/PEF nutation difference
  (well under 0.1 deg) are ignored.

omega_E = 7.2921150e-5 rad/s (Earth's sidereal rotation rate, IERS Conventions 2010).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hil.plant.constants import J2, MU_EARTH_KM3_S2, R_EARTH_KM
from hil.plant.orbit import TleOrbit

FloatArray = npt.NDArray[np.float64]

EARTH_ROTATION_RAD_S = 7.2921150e-5
"""Earth's sidereal rotation rate, rad/s (IERS Conventions 2010)."""


@dataclass(frozen=True)
class GroundTrack:
    """Geocentric latitude and longitude (deg, longitude in [-180, 180)) and radius (km) at n instants."""

    lat_deg: FloatArray
    lon_deg: FloatArray
    r_km: FloatArray

    @property
    def altitude_km(self) -> FloatArray:
        """Height above the equatorial radius, km (the plant's convention for circular orbits)."""
        return self.r_km - R_EARTH_KM


def gmst_rad(jd_ut1: FloatArray) -> FloatArray:
    """Greenwich mean sidereal time (IAU 1982), rad in [0, 2 pi), of UT1 Julian dates (vectorised gstime)."""
    tut1 = (np.asarray(jd_ut1, dtype=np.float64) - 2451545.0) / 36525.0
    seconds = -6.2e-6 * tut1**3 + 0.093104 * tut1**2 + (876600.0 * 3600.0 + 8640184.812866) * tut1 + 67310.54841
    return np.asarray(np.radians(seconds / 240.0) % (2.0 * math.pi), dtype=np.float64)


def _wrap_lon(lon_deg: FloatArray) -> FloatArray:
    return (lon_deg + 180.0) % 360.0 - 180.0


def circular_ground_track(
    t_s: FloatArray, altitude_km: float, inclination_deg: float, node_lon_deg: float = 0.0, u0_deg: float = 0.0
) -> GroundTrack:
    """The track of a circular orbit: ascending node over ``node_lon_deg`` and argument of latitude ``u0_deg``
    at t = 0 (s since the scenario epoch)."""
    t = np.asarray(t_s, dtype=np.float64)
    a = R_EARTH_KM + altitude_km
    n = math.sqrt(MU_EARTH_KM3_S2 / a**3)
    inc = math.radians(inclination_deg)
    node_rate = -1.5 * n * J2 * (R_EARTH_KM / a) ** 2 * math.cos(inc) - EARTH_ROTATION_RAD_S
    u = math.radians(u0_deg) + n * t
    lat = np.degrees(np.arcsin(math.sin(inc) * np.sin(u)))
    lon = math.radians(node_lon_deg) + node_rate * t + np.arctan2(math.cos(inc) * np.sin(u), np.cos(u))
    return GroundTrack(lat, _wrap_lon(np.degrees(lon)), np.full_like(t, a))


def tle_ground_track(orbit: TleOrbit, t_s: FloatArray) -> GroundTrack:
    """The track of a TLE orbit at mission times ``t_s`` (s since the orbit's epoch)."""
    t = np.asarray(t_s, dtype=np.float64)
    fr = orbit.epoch_fr + t / 86400.0
    whole = np.floor(fr)
    jd = orbit.epoch_jd + whole
    fr = fr - whole
    err, r, _ = orbit.satrec.sgp4_array(jd, fr)
    if np.any(err != 0):
        bad = int(np.argmax(err != 0))
        raise ValueError(f"sgp4 error code {int(err[bad])} at t = {float(t[bad]):.0f} s")
    r = np.asarray(r, dtype=np.float64)
    gmst = gmst_rad(jd + fr)
    radius = np.linalg.norm(r, axis=1)
    lat = np.degrees(np.arcsin(r[:, 2] / radius))
    lon = np.degrees(np.arctan2(r[:, 1], r[:, 0]) - gmst)
    return GroundTrack(lat, _wrap_lon(lon), radius)
