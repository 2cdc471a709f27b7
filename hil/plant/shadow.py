"""Earth's shadow: the conical model (Vallado Algorithm 34) and the cylindrical closed forms.

Conical (physics.md): with s the unit Sun vector and r the satellite position, if r.s < 0 let
sigma = angle(-s, r), h = |r| cos sigma (distance behind Earth along the shadow axis) and
v = |r| sin sigma (distance from the axis). The satellite is in the penumbra if
v <= tan(alpha_pen) (R / sin(alpha_pen) + h) and in the umbra if v <= tan(alpha_umb) (R / sin(alpha_umb) - h).

Illumination fraction: 1 outside the penumbra, 0 inside the umbra, and in between linear in v from
the umbra edge (0) to the penumbra edge (1). The linear ramp approximates the visible fraction of the
solar disc; the penumbra lasts about 9 s per crossing at 550 km, so the energy error is negligible.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from hil.plant.constants import ALPHA_PENUMBRA_RAD, ALPHA_UMBRA_RAD, R_EARTH_KM

FloatArray = npt.NDArray[np.float64]


def conical_illumination(r_km: FloatArray, sun_unit: FloatArray, r_earth_km: float = R_EARTH_KM) -> FloatArray:
    """Illumination fraction 0..1 (0 umbra, 1 full Sun) for positions ``r_km`` (n, 3) and unit Sun
    vectors ``sun_unit`` (n, 3) (or (3,)), both in the same Earth-centred frame."""
    r = np.asarray(r_km, dtype=np.float64)
    s = np.broadcast_to(np.asarray(sun_unit, dtype=np.float64), r.shape)
    rs = np.einsum("ij,ij->i", r, s)
    rnorm = np.linalg.norm(r, axis=1)
    h = -rs  # |r| cos(sigma), sigma = angle(-s, r)
    v = np.sqrt(np.maximum(rnorm * rnorm - h * h, 0.0))
    v_pen = math.tan(ALPHA_PENUMBRA_RAD) * (r_earth_km / math.sin(ALPHA_PENUMBRA_RAD) + h)
    v_umb = math.tan(ALPHA_UMBRA_RAD) * (r_earth_km / math.sin(ALPHA_UMBRA_RAD) - h)
    ramp = np.clip((v - v_umb) / np.maximum(v_pen - v_umb, 1e-9), 0.0, 1.0)
    return np.where(rs < 0.0, ramp, 1.0)


def cylindrical_in_shadow(r_km: FloatArray, sun_unit: FloatArray, r_earth_km: float = R_EARTH_KM) -> FloatArray:
    """Boolean (n,): inside the cylindrical shadow (r.s < 0 and |r - (r.s) s| < R)."""
    r = np.asarray(r_km, dtype=np.float64)
    s = np.broadcast_to(np.asarray(sun_unit, dtype=np.float64), r.shape)
    rs = np.einsum("ij,ij->i", r, s)
    perp = np.linalg.norm(r - rs[:, None] * s, axis=1)
    result: FloatArray = (rs < 0.0) & (perp < r_earth_km)
    return result


def eclipse_fraction_cylindrical(altitude_km: float, beta_deg: float, r_earth_km: float = R_EARTH_KM) -> float:
    """Fraction of a circular orbit spent in the cylindrical shadow (physics.md):
    f = acos(sqrt(h^2 + 2 R h) / ((R + h) cos beta)) / pi, and 0 for |beta| >= beta* = asin(R / (R + h))."""
    h = altitude_km
    c = math.sqrt(h * h + 2.0 * r_earth_km * h) / ((r_earth_km + h) * math.cos(math.radians(beta_deg)))
    if c >= 1.0:
        return 0.0
    return math.acos(c) / math.pi
