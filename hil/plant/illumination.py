"""Sunlight on the spacecraft over time: conical-shadow illumination fraction and irradiance.

:class:`IlluminationModel` evaluates an orbit at a vector of times (numpy, no loop).
:class:`IlluminationTable` caches it on a regular grid (default 1 s) as cumulative integrals, so the
*average* over any interval [t0, t1] is exact for the gridded signal and costs two interpolations:
this is what lets ``Plant.step`` take any dt without missing an eclipse edge.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hil.plant.constants import SOLAR_CONSTANT_W_M2
from hil.plant.orbit import OrbitModel
from hil.plant.shadow import conical_illumination

FloatArray = npt.NDArray[np.float64]
BetaSchedule = Callable[[FloatArray], FloatArray | None]
"""Beta angle (deg) at each time, or None to keep the orbit's own (see FaultSchedule.beta_deg_at)."""


@dataclass(frozen=True)
class IlluminationSample:
    """At n instants: ``fraction`` 0..1 of the solar disc visible; ``irradiance_w_m2`` = S0 / d^2
    (sunlight outside the shadow, W/m^2); ``cos_zenith`` = r_hat . s_hat (cosine between the local
    zenith and the Sun, for a body-fixed zenith-facing array); ``beta_deg``."""

    t_s: FloatArray
    fraction: FloatArray
    irradiance_w_m2: FloatArray
    cos_zenith: FloatArray
    beta_deg: FloatArray


class IlluminationModel:
    """Illumination of an orbit (conical shadow, Vallado Algorithm 34) with solar constant
    ``solar_constant_w_m2`` at 1 AU (physics.md: 1360.8 +/- 0.5 W/m^2, Kopp & Lean 2011)."""

    def __init__(self, orbit: OrbitModel, solar_constant_w_m2: float = SOLAR_CONSTANT_W_M2) -> None:
        self.orbit = orbit
        self.solar_constant_w_m2 = solar_constant_w_m2

    def sample(self, t_s: npt.ArrayLike, beta_deg: FloatArray | None = None) -> IlluminationSample:
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        geo = self.orbit.sample(t, beta_deg)
        frac = conical_illumination(geo.r_km, geo.sun_unit)
        rhat = geo.r_km / np.linalg.norm(geo.r_km, axis=1)[:, None]
        cosz = np.einsum("ij,ij->i", rhat, geo.sun_unit)
        irr = self.solar_constant_w_m2 / (geo.sun_distance_au**2)
        return IlluminationSample(t, frac, irr, cosz, geo.beta_deg)


@dataclass(frozen=True)
class IntervalAverages:
    """Averages over consecutive intervals: ``fraction`` (0..1), ``sun_w_m2`` = fraction * irradiance,
    ``zenith_sun_w_m2`` = fraction * irradiance * max(0, cos_zenith), W/m^2; ``beta_deg``."""

    fraction: FloatArray
    sun_w_m2: FloatArray
    zenith_sun_w_m2: FloatArray
    beta_deg: FloatArray


class IlluminationTable:
    """Illumination on a grid of ``resolution_s`` from ``origin_s``, extended forward in chunks of at
    least ``chunk_s`` on demand. Cell k covers [origin + k res, origin + (k+1) res) and holds the value
    at its midpoint."""

    def __init__(
        self,
        model: IlluminationModel,
        origin_s: float = 0.0,
        resolution_s: float = 1.0,
        chunk_s: float = 6 * 3600.0,
        beta_schedule: BetaSchedule | None = None,
    ) -> None:
        self.model = model
        self.origin_s = origin_s
        self.resolution_s = resolution_s
        self.chunk_s = chunk_s
        self.beta_schedule = beta_schedule
        self._cum = np.zeros((4, 1))  # cumulative integrals at the grid edges, W s / m^2 (fraction: s)

    @property
    def end_s(self) -> float:
        """Time up to which the table is computed."""
        return self.origin_s + (self._cum.shape[1] - 1) * self.resolution_s

    def ensure(self, t_end_s: float) -> None:
        """Extend the table so that it covers up to ``t_end_s``."""
        if t_end_s <= self.end_s:
            return
        need = max(t_end_s - self.end_s, self.chunk_s)
        n = math.ceil(need / self.resolution_s)
        start = self.end_s
        mid = start + (np.arange(n, dtype=np.float64) + 0.5) * self.resolution_s
        beta = self.beta_schedule(mid) if self.beta_schedule is not None else None
        s = self.model.sample(mid, beta)
        sun = s.fraction * s.irradiance_w_m2
        vals = np.stack([s.fraction, sun, sun * np.maximum(s.cos_zenith, 0.0), s.beta_deg]) * self.resolution_s
        cum = np.cumsum(vals, axis=1) + self._cum[:, -1:]
        self._cum = np.concatenate([self._cum, cum], axis=1)

    def averages(self, edges_s: FloatArray) -> IntervalAverages:
        """Averages over the intervals [edges[i], edges[i+1]] (edges increasing, >= origin)."""
        edges = np.asarray(edges_s, dtype=np.float64)
        if edges[0] < self.origin_s:
            raise ValueError(f"illumination table starts at {self.origin_s} s, asked for {edges[0]} s")
        self.ensure(float(edges[-1]))
        x = (edges - self.origin_s) / self.resolution_s
        grid = np.arange(self._cum.shape[1], dtype=np.float64)
        span = np.diff(edges)
        out = [np.diff(np.interp(x, grid, self._cum[i])) / span for i in range(4)]
        return IntervalAverages(out[0], out[1], out[2], out[3])

    def average(self, t0_s: float, t1_s: float) -> tuple[float, float, float, float]:
        """(fraction, sun_w_m2, zenith_sun_w_m2, beta_deg) averaged over [t0, t1]."""
        a = self.averages(np.array([t0_s, t1_s]))
        return float(a.fraction[0]), float(a.sun_w_m2[0]), float(a.zenith_sun_w_m2[0]), float(a.beta_deg[0])
