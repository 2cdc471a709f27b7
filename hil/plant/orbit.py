"""Where the satellite and the Sun are: a circular orbit given by altitude and beta angle, or a TLE.

Both models expose ``sample(t_s, beta_deg=None) -> OrbitSample`` over a numpy array of mission times
(s since the scenario epoch), and the scalars ``period_s`` and ``altitude_km``. ``beta_deg`` (an array
as long as ``t_s``) overrides the beta angle of a circular orbit (the beta-change fault); a TLE orbit
ignores it (its beta follows from the geometry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt
from sgp4.api import Satrec, jday

from hil.plant.constants import MU_EARTH_KM3_S2, R_EARTH_KM
from hil.plant.sun import sun_position

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class OrbitSample:
    """Geometry at n instants: ``r_km`` (n, 3) satellite position, ``sun_unit`` (n, 3) unit vector to the
    Sun, ``sun_distance_au`` (n,), ``beta_deg`` (n,) angle between the orbit plane and the Sun vector."""

    r_km: FloatArray
    sun_unit: FloatArray
    sun_distance_au: FloatArray
    beta_deg: FloatArray


class OrbitModel(Protocol):
    """What the illumination model needs from an orbit."""

    @property
    def period_s(self) -> float: ...

    @property
    def altitude_km(self) -> float: ...

    def sample(self, t_s: FloatArray, beta_deg: FloatArray | None = None) -> OrbitSample: ...


@dataclass(frozen=True)
class CircularOrbit:
    """A circular orbit of altitude ``altitude_km`` whose plane makes ``beta_deg`` with the Sun vector.

    Frame: the orbit lies in the x-y plane, r = a (cos u, sin u, 0) with argument of latitude
    u = phase_deg + 360 t / T measured from orbit noon (the point closest to the Sun); the Sun is fixed
    at 1 AU along (cos beta, 0, sin beta) (its 1 deg/day motion is represented by the beta angle, which
    a fault can change). ``inclination_deg`` is descriptive: for eclipses only beta matters.
    T = 2 pi sqrt(a^3 / mu) (physics.md).
    """

    altitude_km: float
    beta_deg: float = 0.0
    inclination_deg: float = 53.0
    phase_deg: float = 0.0

    @property
    def semi_major_axis_km(self) -> float:
        return R_EARTH_KM + self.altitude_km

    @property
    def period_s(self) -> float:
        return 2.0 * math.pi * math.sqrt(self.semi_major_axis_km**3 / MU_EARTH_KM3_S2)

    def sample(self, t_s: FloatArray, beta_deg: FloatArray | None = None) -> OrbitSample:
        t = np.asarray(t_s, dtype=np.float64)
        beta = np.full_like(t, self.beta_deg) if beta_deg is None else np.asarray(beta_deg, dtype=np.float64)
        u = math.radians(self.phase_deg) + 2.0 * math.pi * t / self.period_s
        a = self.semi_major_axis_km
        r = np.stack([a * np.cos(u), a * np.sin(u), np.zeros_like(u)], axis=-1)
        b = np.radians(beta)
        s = np.stack([np.cos(b), np.zeros_like(b), np.sin(b)], axis=-1)
        return OrbitSample(r, s, np.ones_like(t), beta)


def julian_date(when: datetime) -> tuple[float, float]:
    """(jd, fraction) of a UTC datetime, as sgp4 wants them."""
    when = when.astimezone(UTC)
    jd, fr = jday(when.year, when.month, when.day, when.hour, when.minute, when.second + when.microsecond * 1e-6)
    return float(jd), float(fr)


class TleOrbit:
    """An orbit propagated with SGP4 from a two-line element set (positions in TEME, km).

    Mission time t = 0 is ``epoch`` (UTC; default: the TLE's own epoch). The Sun comes from
    :func:`hil.plant.sun.sun_position`; beta from sin(beta) = h_hat . s_hat, h = r x v.
    """

    def __init__(self, line1: str, line2: str, epoch: datetime | None = None) -> None:
        self.line1 = line1
        self.line2 = line2
        self.satrec = Satrec.twoline2rv(line1, line2)
        if epoch is None:
            self.epoch_jd, self.epoch_fr = float(self.satrec.jdsatepoch), float(self.satrec.jdsatepochF)
        else:
            self.epoch_jd, self.epoch_fr = julian_date(epoch)

    @property
    def period_s(self) -> float:
        """Anomalistic period from the Kozai mean motion (rad/min), s."""
        return 2.0 * math.pi / float(self.satrec.no_kozai) * 60.0

    @property
    def altitude_km(self) -> float:
        """Mean altitude above the equatorial radius (semi-major axis - R), km."""
        return float(self.satrec.a) * float(self.satrec.radiusearthkm) - R_EARTH_KM

    @property
    def inclination_deg(self) -> float:
        return math.degrees(float(self.satrec.inclo))

    def sample(self, t_s: FloatArray, beta_deg: FloatArray | None = None) -> OrbitSample:
        t = np.asarray(t_s, dtype=np.float64)
        fr = self.epoch_fr + t / 86400.0
        whole = np.floor(fr)
        jd = np.full_like(t, self.epoch_jd) + whole
        fr = fr - whole
        err, r, v = self.satrec.sgp4_array(jd, fr)
        if np.any(err != 0):
            bad = int(np.argmax(err != 0))
            raise ValueError(f"sgp4 error code {int(err[bad])} at t = {float(t[bad]):.0f} s")
        sun = sun_position(jd + fr)
        h = np.cross(r, v)
        h /= np.linalg.norm(h, axis=1)[:, None]
        beta = np.degrees(np.arcsin(np.clip(np.einsum("ij,ij->i", h, sun.unit), -1.0, 1.0)))
        return OrbitSample(np.asarray(r, dtype=np.float64), sun.unit, sun.distance_au, beta)
