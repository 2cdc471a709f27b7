"""Where the satellite and the Sun are: a circular orbit given by altitude and beta angle, or a TLE.

Both models expose ``sample(t_s, beta_deg=None) -> OrbitSample`` over a numpy array of mission times
(s since the scenario epoch), the scalars ``period_s`` and ``altitude_km``, and ``check_span(t_end_s)``
(ValueError if the orbit cannot be propagated over [0, t_end_s]). ``beta_deg`` (an array as long as
``t_s``) overrides the beta angle of a circular orbit (the beta-change fault); a TLE orbit ignores it
(its beta follows from the geometry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt
from sgp4.api import SGP4_ERRORS, Satrec, jday

from hil.plant.constants import MU_EARTH_KM3_S2, R_EARTH_KM
from hil.plant.sun import sun_position
from hil.plant.tle import TleError, parse_tle

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

    def check_span(self, t_end_s: float) -> None: ...


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

    def __post_init__(self) -> None:
        for name in ("altitude_km", "beta_deg", "inclination_deg", "phase_deg"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"[orbit] {name} = {getattr(self, name)!r} is not a finite number")
        if self.altitude_km <= 0.0:
            raise ValueError(f"[orbit] altitude_km = {self.altitude_km:g}: a circular orbit must be above the surface")
        if not -90.0 <= self.beta_deg <= 90.0:
            raise ValueError(f"[orbit] beta_deg = {self.beta_deg:g} is outside -90..90 deg")

    def check_span(self, t_end_s: float) -> None:
        """Nothing to check: a circular orbit is the same at every time."""

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
    """(jd, fraction) of an aware datetime, as sgp4 wants them. ValueError for a naive datetime:
    ``astimezone`` would read it as this machine's local time."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{when.isoformat()} has no UTC offset: give the time zone (e.g. 'Z' or '+00:00')")
    when = when.astimezone(UTC)
    jd, fr = jday(when.year, when.month, when.day, when.hour, when.minute, when.second + when.microsecond * 1e-6)
    return float(jd), float(fr)


SGP4_INIT_FIELDS: dict[int, tuple[int, int, int, str]] = {
    1: (2, 27, 33, "eccentricity"),
    2: (2, 53, 63, "mean motion"),
    3: (2, 27, 33, "eccentricity"),
    4: (2, 27, 33, "eccentricity"),
    6: (1, 54, 61, "BSTAR drag term"),
}
"""The TLE field (line, first and last column, name) most likely behind each sgp4 error code at
initialisation (sgp4.api.SGP4_ERRORS: 1 and 3 eccentricity out of range, 2 mean motion < 0, 4
semi-latus rectum < 0, 6 decayed)."""


class TleOrbit:
    """An orbit propagated with SGP4 from a two-line element set (positions in TEME, km).

    The lines are checked column by column first (:func:`hil.plant.tle.parse_tle`; TleError names the
    line and column), then sgp4's own initialisation error is checked. Mission time t = 0 is ``epoch``
    (an aware datetime; default: the TLE's own epoch). The Sun comes from
    :func:`hil.plant.sun.sun_position`; beta from sin(beta) = h_hat . s_hat, h = r x v.
    :meth:`check_span` propagates a whole span at once and refuses one in which the orbit decays.
    """

    def __init__(self, line1: str, line2: str, epoch: datetime | None = None) -> None:
        self.elements = parse_tle(line1, line2)
        self.line1 = self.elements.line1
        self.line2 = self.elements.line2
        self.satrec = Satrec.twoline2rv(self.line1, self.line2)
        code = int(self.satrec.error)
        if code != 0:
            line, first, last, name = SGP4_INIT_FIELDS.get(code, (2, 53, 63, "mean motion"))
            raise TleError(f"TLE line {line}, columns {first}-{last} ({name}): sgp4 refuses these elements at their "
                           f"epoch (error {code}: {SGP4_ERRORS.get(code, 'unknown')})", line, first)
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

    def _propagate(self, t_s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(jd, fr, r, v) at mission times ``t_s``; ValueError at the first time SGP4 fails or gives a
        non-finite state (with the hour, and what to do)."""
        t = np.asarray(t_s, dtype=np.float64)
        fr = self.epoch_fr + t / 86400.0
        whole = np.floor(fr)
        jd = np.full_like(t, self.epoch_jd) + whole
        fr = fr - whole
        err, r, v = self.satrec.sgp4_array(jd, fr)
        bad = (err != 0) | ~np.isfinite(r).all(axis=1) | ~np.isfinite(v).all(axis=1)
        if np.any(bad):
            i = int(np.argmax(bad))
            code = int(err[i])
            why = f"sgp4 error {code}: {SGP4_ERRORS.get(code, 'unknown')}" if code else "sgp4 gave a non-finite state"
            raise ValueError(
                f"TLE orbit cannot be propagated {float(t[i]) / 3600.0:.2f} h into the scenario "
                f"(t = {float(t[i]):.0f} s; {why}): the satellite decays or the elements are wrong there; "
                "shorten the run (duration_s, --orbits, --duration) to end before it, or use a TLE for a higher "
                "orbit or a later epoch")
        return jd, fr, np.asarray(r, dtype=np.float64), np.asarray(v, dtype=np.float64)

    def check_span(self, t_end_s: float, step_s: float = 60.0) -> None:
        """Propagate [0, ``t_end_s``] every ``step_s`` (one vectorised sgp4 call: ~1,500 states for a day)
        and raise ValueError, naming the hour, where SGP4 fails (decay) or gives NaN."""
        if not math.isfinite(t_end_s) or t_end_s < 0:
            raise ValueError(f"span {t_end_s!r} s: must be a finite time >= 0")
        self._propagate(np.append(np.arange(0.0, t_end_s, step_s), t_end_s))

    def sample(self, t_s: FloatArray, beta_deg: FloatArray | None = None) -> OrbitSample:
        jd, fr, r, v = self._propagate(t_s)
        sun = sun_position(jd + fr)
        h = np.cross(r, v)
        h /= np.linalg.norm(h, axis=1)[:, None]
        beta = np.degrees(np.arcsin(np.clip(np.einsum("ij,ij->i", h, sun.unit), -1.0, 1.0)))
        return OrbitSample(r, sun.unit, sun.distance_au, beta)
