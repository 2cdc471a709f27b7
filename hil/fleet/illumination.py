"""Sunlight on every satellite of a constellation, averaged over the simulation's steps.

For each step [t_k, t_k + dt) and each satellite: the illumination fraction (conical shadow,
:func:`hil.plant.shadow.conical_illumination`, Vallado Algorithm 34) averaged over ``substeps``
equally spaced samples at the sub-interval midpoints, the flux fraction * S0 / d^2 (W/m^2, the Sun
from :func:`hil.plant.sun.sun_position`), the same times max(0, cos zenith) for zenith-pointing arrays,
and the beta angle at the step's midpoint. This is what :class:`hil.plant.IlluminationTable` gives a
single plant, computed for N satellites at once on the step grid instead of a 1 s table (143
satellites x 72 h at 1 s would be 37 M samples per quantity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hil.fleet.constellation import Constellation
from hil.plant.plant import SUNLIT_THRESHOLD
from hil.plant.shadow import conical_illumination
from hil.plant.sun import sun_position

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FleetIllumination:
    """Step averages, each (steps, N): ``fraction`` 0..1, ``sun_w_m2``, ``zenith_sun_w_m2`` (W/m^2);
    ``beta_deg`` at each step's midpoint; ``sunlit`` = fraction >= 0.5; ``t0_s``, ``dt_s``."""

    t0_s: float
    dt_s: float
    fraction: FloatArray
    sun_w_m2: FloatArray
    zenith_sun_w_m2: FloatArray
    beta_deg: FloatArray

    @property
    def steps(self) -> int:
        return int(self.fraction.shape[0])

    @property
    def sunlit(self) -> npt.NDArray[np.bool_]:
        return self.fraction >= SUNLIT_THRESHOLD


def illuminate(
    constellation: Constellation,
    t0_s: float,
    steps: int,
    dt_s: float,
    solar_constant_w_m2: float,
    substeps: int = 6,
    chunk_steps: int = 512,
) -> FleetIllumination:
    """Illumination of every satellite over ``steps`` steps of ``dt_s`` from ``t0_s`` (see module doc)."""
    n = constellation.n
    frac = np.empty((steps, n))
    sun = np.empty((steps, n))
    zen = np.empty((steps, n))
    beta = np.empty((steps, n))
    offsets = (np.arange(substeps) + 0.5) * dt_s / substeps
    for a in range(0, steps, chunk_steps):
        b = min(steps, a + chunk_steps)
        t = (t0_s + dt_s * np.arange(a, b))[:, None] + offsets[None, :]
        tf = t.ravel()
        s = sun_position(constellation.jd(tf))
        r = constellation.positions_km(tf)  # (len(tf), N, 3)
        su = np.broadcast_to(s.unit[:, None, :], r.shape).reshape(-1, 3)
        f = conical_illumination(r.reshape(-1, 3), su).reshape(len(tf), n)
        irr = (solar_constant_w_m2 / s.distance_au**2)[:, None]
        rhat = r / np.linalg.norm(r, axis=-1, keepdims=True)
        cosz = np.einsum("tnj,tj->tn", rhat, s.unit)
        shape = (b - a, substeps, n)
        frac[a:b] = f.reshape(shape).mean(axis=1)
        sun[a:b] = (f * irr).reshape(shape).mean(axis=1)
        zen[a:b] = (f * irr * np.maximum(cosz, 0.0)).reshape(shape).mean(axis=1)
        mid = t0_s + dt_s * (np.arange(a, b) + 0.5)
        beta[a:b] = constellation.beta_deg(mid, sun_position(constellation.jd(mid)).unit)
    return FleetIllumination(t0_s, dt_s, frac, sun, zen, beta)
