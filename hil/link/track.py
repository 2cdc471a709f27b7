"""Where the satellite is over the rotating Earth: the plant's orbit placed in an inertial frame.

A contact plan needs what the plant does not: where the orbit's plane lies among the stars and the
instant of mission time 0 (the Earth's rotation angle). Two tracks:

* :class:`TleTrack` wraps :class:`hil.plant.orbit.TleOrbit` (SGP4 in TEME; its epoch is mission t = 0).
* :class:`CircularTrack` is a two-body circular orbit (no J2, like the plant's
  :class:`~hil.plant.orbit.CircularOrbit`). :meth:`CircularTrack.for_plant` places the plant's circular
  orbit at a UTC epoch so that it keeps the plant's beta angle and phase: the node Omega solves
  sin(beta) = cos(dec_s) sin(i) sin(Omega - RA_s) + sin(dec_s) cos(i) (physics.md) for the Sun at the
  epoch, and the argument of latitude at t = 0 is orbit noon plus ``phase_deg``, as in the plant. Over a
  day the Sun moves about 1 deg along the ecliptic, which the plant represents by a constant beta: the
  two drift apart by that much (about 16 s of orbit). Left out: the J2 drift of the node
  (about -4.6 deg/day at 550 km, 53 deg), which shifts the ground track; use a TLE where it matters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from hil.link.geometry import SECONDS_PER_DAY, gmst_rad, teme_to_ecef
from hil.plant.constants import J2000_JD
from hil.plant.orbit import CircularOrbit, TleOrbit, julian_date
from hil.plant.sun import sun_position

FloatArray = npt.NDArray[np.float64]


class EarthTrack(Protocol):
    """An orbit placed in time: ``epoch_days_j2000`` is mission t = 0 in UT1 days since J2000.0;
    ``teme_km(t_s)`` gives positions (n, 3) km in TEME at mission times (n,) s."""

    @property
    def epoch_days_j2000(self) -> float: ...

    def teme_km(self, t_s: FloatArray) -> FloatArray: ...


def ecef_km(track: EarthTrack, t_s: FloatArray) -> FloatArray:
    """Earth-fixed positions (n, 3) km of ``track`` at mission times ``t_s`` (n,) s."""
    t = np.asarray(t_s, dtype=np.float64)
    return teme_to_ecef(track.teme_km(t), gmst_rad(track.epoch_days_j2000 + t / SECONDS_PER_DAY))


def days_j2000(when: datetime) -> float:
    """UT1 (taken as UTC) days since J2000.0 of an aware datetime; ValueError for a naive one."""
    if when.tzinfo is None:
        raise ValueError(f"epoch {when.isoformat()} has no time zone: give UTC, e.g. 2026-03-20T00:00:00Z")
    jd, fr = julian_date(when)
    return (jd - J2000_JD) + fr


class TleTrack:
    """A TLE orbit over the Earth: SGP4 propagation by :class:`hil.plant.orbit.TleOrbit` (TEME)."""

    def __init__(self, orbit: TleOrbit) -> None:
        self.orbit = orbit

    @property
    def epoch_days_j2000(self) -> float:
        return (self.orbit.epoch_jd - J2000_JD) + self.orbit.epoch_fr

    def teme_km(self, t_s: FloatArray) -> FloatArray:
        return self.orbit.sample(np.asarray(t_s, dtype=np.float64)).r_km


@dataclass(frozen=True)
class CircularTrack:
    """The plant's circular orbit (two-body: altitude, inclination, period) with its plane placed among
    the stars: right ascension of the ascending node (deg), argument of latitude at t = 0 (deg from the
    node) and the epoch of t = 0 (UT1 days since J2000.0). The orbit's beta and phase are not used
    here; :meth:`for_plant` derives the node and u0 from them."""

    orbit: CircularOrbit
    raan_deg: float
    u0_deg: float
    epoch_days: float

    @property
    def epoch_days_j2000(self) -> float:
        return self.epoch_days

    @property
    def semi_major_axis_km(self) -> float:
        return self.orbit.semi_major_axis_km

    @property
    def period_s(self) -> float:
        return self.orbit.period_s

    def plane_axes(self) -> tuple[FloatArray, FloatArray]:
        """Unit vectors (3,) of the orbit plane: towards the ascending node, and 90 deg ahead of it."""
        inc, node = math.radians(self.orbit.inclination_deg), math.radians(self.raan_deg)
        n_hat = np.array([math.cos(node), math.sin(node), 0.0])
        m_hat = np.array([-math.cos(inc) * math.sin(node), math.cos(inc) * math.cos(node), math.sin(inc)])
        return n_hat, m_hat

    def teme_km(self, t_s: FloatArray) -> FloatArray:
        t = np.asarray(t_s, dtype=np.float64)
        u = math.radians(self.u0_deg) + 2.0 * math.pi * t / self.period_s
        n_hat, m_hat = self.plane_axes()
        a = self.semi_major_axis_km
        return a * (np.cos(u)[..., None] * n_hat + np.sin(u)[..., None] * m_hat)

    @classmethod
    def for_plant(cls, orbit: CircularOrbit, epoch: datetime) -> CircularTrack:
        """The plant's circular orbit with mission t = 0 at ``epoch`` (aware datetime, UTC).

        Raises ValueError when no node gives the plant's beta with this inclination at this epoch
        (|beta| can reach at most i + |dec_sun|, e.g. 53 deg at an equinox for i = 53 deg).
        """
        days = days_j2000(epoch)
        sun = sun_position(J2000_JD + days)
        ra, dec = math.radians(float(sun.ra_deg[0])), math.radians(float(sun.dec_deg[0]))
        inc, beta = math.radians(orbit.inclination_deg), math.radians(orbit.beta_deg)
        if math.isclose(math.sin(inc), 0.0, abs_tol=1e-12):
            if not math.isclose(beta, dec if math.cos(inc) > 0 else -dec, abs_tol=1e-6):
                raise ValueError(f"an equatorial orbit sees beta = solar declination ({math.degrees(dec):.2f} deg)")
            node = 0.0
        else:
            x = (math.sin(beta) - math.sin(dec) * math.cos(inc)) / (math.cos(dec) * math.sin(inc))
            if abs(x) > 1.0:
                raise ValueError(
                    f"beta {orbit.beta_deg} deg is out of reach for inclination {orbit.inclination_deg} deg "
                    f"at {epoch.astimezone(UTC).isoformat()} (solar declination {math.degrees(dec):.2f} deg): "
                    "pick another epoch"
                )
            node = ra + math.asin(x)
        placed = cls(orbit, math.degrees(node) % 360.0, 0.0, days)
        n_hat, m_hat = placed.plane_axes()
        s = sun.unit[0]
        noon = math.degrees(math.atan2(float(s @ m_hat), float(s @ n_hat)))
        return cls(orbit, placed.raan_deg, (noon + orbit.phase_deg) % 360.0, days)


def track_for(orbit: CircularOrbit | TleOrbit, epoch: datetime | None) -> EarthTrack:
    """The track of a scenario's orbit. A circular orbit needs ``epoch`` (mission t = 0, UTC); a TLE orbit
    has its own (its ``[orbit] epoch_utc`` or the TLE epoch), so ``epoch`` must then be None."""
    if isinstance(orbit, TleOrbit):
        if epoch is not None:
            raise ValueError("a TLE orbit keeps its own epoch: set [orbit] epoch_utc, not [link] epoch_utc")
        return TleTrack(orbit)
    if epoch is None:
        raise ValueError("a circular orbit needs [link] epoch_utc (mission t = 0, UTC) to place it over the Earth")
    return CircularTrack.for_plant(orbit, epoch)
