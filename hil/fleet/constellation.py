"""Constellation geometry: a Walker generator or a TLE file, positions, beta angles and the ISL grid.

Walker delta i: T/P/F (Walker 1984): ``planes`` P equally spaced in right ascension of the ascending
node over ``raan_spread_deg`` (360 for a delta, 180 for a star), S = T/P satellites per plane equally
spaced in argument of latitude, and the first satellite of plane p ahead of plane p-1's by
F * 360 / T degrees (the phasing factor F in 0..P-1):

    RAAN_p   = RAAN_0 + p * spread / P
    u_{p,k}  = u_0 + k * 360 / S + p * F * 360 / T                        (deg, at the epoch)

Circular orbits: r = a (cos RAAN cos u - sin RAAN sin u cos i, sin RAAN cos u + cos RAAN sin u cos i,
sin u sin i) in the equatorial inertial frame, u advancing at the mean motion n = sqrt(mu / a^3) and
the node drifting with J2: dRAAN/dt = -1.5 n J2 (R / a)^2 cos i (physics.md "Orbit and eclipse").
Beta: sin beta = h_hat . s_hat with h_hat = (sin i sin RAAN, -sin i cos RAAN, cos i).

Satellites from a TLE file are propagated with SGP4 (:class:`hil.plant.orbit.TleOrbit`); they are
sorted into planes by their node (within ``plane_tolerance_deg``) and into slots by argument of
latitude, so the ISL grid applies to them too.

ISL grid ("+Grid"): each satellite links to the one ahead and behind in its plane and to the same
slot in the two adjacent planes (the seam plane P-1 -> 0 closes the torus). Hops between (p1, k1)
and (p2, k2): min(|dp|, P - |dp|) + min(|dk|, S - |dk|), exact for that torus grid graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hil.link.geometry import gmst_rad
from hil.plant.constants import J2, J2000_JD, MU_EARTH_KM3_S2, R_EARTH_KM
from hil.plant.orbit import TleOrbit, julian_date

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_EPOCH = datetime(2026, 3, 20, 0, 0, tzinfo=UTC)
"""Mission time 0 of a generated constellation unless told otherwise (the March 2026 equinox: the Sun
on the equator, so the planes' beta angles range over +-inclination with their nodes)."""


@dataclass(frozen=True)
class WalkerSpec:
    """Walker constellation: ``total`` satellites in ``planes`` planes with phasing ``phasing`` (F),
    circular at ``altitude_km`` and ``inclination_deg``; nodes spread over ``raan_spread_deg``
    (360 delta, 180 star) from ``raan0_deg``; ``u0_deg`` the first satellite's argument of latitude."""

    total: int
    planes: int
    phasing: int
    altitude_km: float = 550.0
    inclination_deg: float = 53.0
    raan_spread_deg: float = 360.0
    raan0_deg: float = 0.0
    u0_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.planes < 1 or self.total < 1 or self.total % self.planes:
            raise ValueError(f"Walker {self.total}/{self.planes}: total must be a positive multiple of planes")
        if not 0 <= self.phasing < self.planes:
            raise ValueError(f"Walker phasing F={self.phasing} must lie in 0..{self.planes - 1}")
        if self.altitude_km <= 0:
            raise ValueError("altitude must be > 0 km")

    @property
    def per_plane(self) -> int:
        return self.total // self.planes


@dataclass(frozen=True)
class IslLink:
    """An inter-satellite link hop: ``latency_s`` per hop (propagation over ~1000-3000 km plus
    switching) and ``rate_bps``; store-and-forward, no contention. Defaults are assumptions of this
    simulator (an optical small-satellite terminal class, 1 Gbit/s), not measured figures."""

    latency_s: float = 0.02
    rate_bps: float = 1.0e9

    def transfer_s(self, hops: IntArray | int, size_bytes: FloatArray | float) -> FloatArray:
        """Time to move ``size_bytes`` over ``hops`` hops, s (arrays broadcast)."""
        per_hop = self.latency_s + 8.0 * size_bytes / self.rate_bps
        return np.asarray(hops, dtype=np.float64) * per_hop


def unit_vector_from_latlon(lat_deg: npt.ArrayLike, lon_deg: npt.ArrayLike, gmst: npt.ArrayLike) -> FloatArray:
    """Inertial unit vectors (n, 3) of Earth-fixed points (geocentric latitude/longitude, deg) at the
    sidereal angles ``gmst`` (rad, :func:`hil.link.geometry.gmst_rad`)."""
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    lam = np.radians(np.asarray(lon_deg, dtype=np.float64)) + np.asarray(gmst, dtype=np.float64)
    return np.stack([np.cos(lat) * np.cos(lam), np.cos(lat) * np.sin(lam), np.sin(lat)], axis=-1)


class Constellation:
    """N satellites with their plane/slot on the ISL grid and a way to place them at any time.

    ``positions_km(t_s)`` -> (len(t), N, 3) inertial positions; ``beta_deg(t_s)`` -> (len(t), N);
    ``hops`` (N, N) ISL hop counts; ``neighbours`` (N, 4) indices (ahead, behind, plane+1, plane-1).
    ``epoch``: UTC of mission time 0.
    """

    def __init__(
        self,
        plane: IntArray,
        slot: IntArray,
        planes: int,
        per_plane: int,
        epoch: datetime,
        altitude_km: FloatArray,
        period_s: FloatArray,
        names: Sequence[str],
    ) -> None:
        self.plane = np.asarray(plane, dtype=np.int64)
        self.slot = np.asarray(slot, dtype=np.int64)
        self.planes = planes
        self.per_plane = per_plane
        self.epoch = epoch
        self.epoch_jd = sum(julian_date(epoch))
        self.altitude_km = np.asarray(altitude_km, dtype=np.float64)
        self.period_s = np.asarray(period_s, dtype=np.float64)
        self.names = list(names)
        self.n = len(self.plane)
        dp = np.abs(self.plane[:, None] - self.plane[None, :])
        dk = np.abs(self.slot[:, None] - self.slot[None, :])
        self.hops: IntArray = np.minimum(dp, planes - dp) + np.minimum(dk, per_plane - dk)
        index = {(int(p), int(k)): i for i, (p, k) in enumerate(zip(self.plane, self.slot, strict=True))}
        nb = np.empty((self.n, 4), dtype=np.int64)
        for i, (p, k) in enumerate(zip(self.plane.tolist(), self.slot.tolist(), strict=True)):
            cand = [(p, (k + 1) % per_plane), (p, (k - 1) % per_plane),
                    ((p + 1) % planes, k), ((p - 1) % planes, k)]
            nb[i] = [index.get(c, i) for c in cand]  # a missing grid cell (TLE gaps): no link, self
        self.neighbours: IntArray = nb

    def positions_km(self, t_s: npt.ArrayLike) -> FloatArray:
        raise NotImplementedError

    def velocities_km_s(self, t_s: npt.ArrayLike) -> FloatArray:
        raise NotImplementedError

    def jd(self, t_s: npt.ArrayLike) -> FloatArray:
        """Julian dates of mission times ``t_s``."""
        return self.epoch_jd + np.asarray(t_s, dtype=np.float64) / 86400.0

    def beta_deg(self, t_s: npt.ArrayLike, sun_unit: FloatArray) -> FloatArray:
        """Beta angle (len(t), N), deg, for unit Sun vectors ``sun_unit`` (len(t), 3)."""
        r = self.positions_km(t_s)
        v = self.velocities_km_s(t_s)
        h = np.cross(r, v)
        h /= np.linalg.norm(h, axis=-1, keepdims=True)
        beta: FloatArray = np.degrees(np.arcsin(np.clip(np.einsum("tnj,tj->tn", h, sun_unit), -1.0, 1.0)))
        return beta

    def nearest(self, t_s: FloatArray, lat_deg: FloatArray, lon_deg: FloatArray) -> tuple[IntArray, FloatArray]:
        """For each (time, place): the satellite whose sub-satellite point is nearest, and the Earth
        central angle to it (deg). Arrays of one length; computed in chunks."""
        t = np.asarray(t_s, dtype=np.float64)
        out_i = np.empty(len(t), dtype=np.int64)
        out_a = np.empty(len(t), dtype=np.float64)
        for a in range(0, len(t), 2048):
            sl = slice(a, a + 2048)
            r = self.positions_km(t[sl])
            r /= np.linalg.norm(r, axis=-1, keepdims=True)
            g = unit_vector_from_latlon(lat_deg[sl], lon_deg[sl], gmst_rad(self.jd(t[sl]) - J2000_JD))
            c = np.einsum("tnj,tj->tn", r, g)
            best = np.argmax(c, axis=1)
            out_i[sl] = best
            out_a[sl] = np.degrees(np.arccos(np.clip(c[np.arange(len(best)), best], -1.0, 1.0)))
        return out_i, out_a


class WalkerConstellation(Constellation):
    """Circular orbits from a :class:`WalkerSpec` (see the module docstring for the closed forms)."""

    def __init__(self, spec: WalkerSpec, epoch: datetime = DEFAULT_EPOCH) -> None:
        self.spec = spec
        s = spec.per_plane
        idx = np.arange(spec.total)
        plane, slot = idx // s, idx % s
        a = R_EARTH_KM + spec.altitude_km
        self.semi_major_axis_km = a
        self.mean_motion_rad_s = math.sqrt(MU_EARTH_KM3_S2 / a**3)
        self.inclination_rad = math.radians(spec.inclination_deg)
        self.raan_rate_rad_s = (-1.5 * self.mean_motion_rad_s * J2 * (R_EARTH_KM / a) ** 2
                                * math.cos(self.inclination_rad))
        self.raan0_deg = spec.raan0_deg + plane * spec.raan_spread_deg / spec.planes
        self.u0_deg = spec.u0_deg + slot * 360.0 / s + plane * spec.phasing * 360.0 / spec.total
        period = 2.0 * math.pi / self.mean_motion_rad_s
        names = [f"sat-{p:02d}-{k:02d}" for p, k in zip(plane, slot, strict=True)]
        super().__init__(plane, slot, spec.planes, s, epoch, np.full(spec.total, spec.altitude_km),
                         np.full(spec.total, period), names)

    def _angles(self, t_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))[:, None]
        raan = np.radians(self.raan0_deg)[None, :] + self.raan_rate_rad_s * t
        u = np.radians(self.u0_deg)[None, :] + self.mean_motion_rad_s * t
        return raan, u

    def positions_km(self, t_s: npt.ArrayLike) -> FloatArray:
        raan, u = self._angles(t_s)
        ci, si = math.cos(self.inclination_rad), math.sin(self.inclination_rad)
        cr, sr, cu, su = np.cos(raan), np.sin(raan), np.cos(u), np.sin(u)
        a = self.semi_major_axis_km
        return a * np.stack([cr * cu - sr * su * ci, sr * cu + cr * su * ci, su * si], axis=-1)

    def velocities_km_s(self, t_s: npt.ArrayLike) -> FloatArray:
        raan, u = self._angles(t_s)
        ci, si = math.cos(self.inclination_rad), math.sin(self.inclination_rad)
        cr, sr, cu, su = np.cos(raan), np.sin(raan), np.cos(u), np.sin(u)
        v = self.semi_major_axis_km * self.mean_motion_rad_s  # node drift is negligible for h's direction
        return v * np.stack([-cr * su - sr * cu * ci, -sr * su + cr * cu * ci, cu * si], axis=-1)


class TleConstellation(Constellation):
    """Satellites from two-line element sets, propagated with SGP4 (:class:`TleOrbit`)."""

    def __init__(self, orbits: Sequence[TleOrbit], names: Sequence[str], epoch: datetime,
                 plane_tolerance_deg: float = 2.0) -> None:
        if not orbits:
            raise ValueError("no satellites in the TLE set")
        self.orbits = list(orbits)
        ejd = sum(julian_date(epoch))
        raan = np.array([math.degrees(o.satrec.nodeo) for o in orbits])
        # argument of latitude at the epoch: argp + mean anomaly (circular orbits), advanced to the epoch
        u = np.array([math.degrees(o.satrec.argpo + o.satrec.mo + o.satrec.no_kozai * 1440.0
                                   * (ejd - (o.satrec.jdsatepoch + o.satrec.jdsatepochF))) % 360.0
                      for o in orbits])
        order = np.argsort(raan)
        plane = np.empty(len(orbits), dtype=np.int64)
        p = 0
        for j, i in enumerate(order):
            if j and (raan[i] - raan[order[j - 1]]) > plane_tolerance_deg:
                p += 1
            plane[i] = p
        planes = p + 1
        if planes > 1 and (raan[order[0]] + 360.0 - raan[order[-1]]) <= plane_tolerance_deg:
            plane[plane == p] = 0  # the last cluster wraps around to the first
            planes = p
        slot = np.empty(len(orbits), dtype=np.int64)
        per_plane = 0
        for q in range(planes):
            members = np.nonzero(plane == q)[0]
            members = members[np.argsort(u[members])]
            slot[members] = np.arange(len(members))
            per_plane = max(per_plane, len(members))
        super().__init__(plane, slot, planes, per_plane, epoch,
                         np.array([o.altitude_km for o in orbits]), np.array([o.period_s for o in orbits]), names)

    def _propagate(self, t_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        jd = self.jd(t)
        whole = np.floor(jd)
        r = np.empty((len(t), self.n, 3))
        v = np.empty((len(t), self.n, 3))
        for i, o in enumerate(self.orbits):
            err, ri, vi = o.satrec.sgp4_array(whole, jd - whole)
            if np.any(err != 0):
                raise ValueError(f"sgp4 error for {self.names[i]} (code {int(err[err != 0][0])})")
            r[:, i], v[:, i] = ri, vi
        return r, v

    def positions_km(self, t_s: npt.ArrayLike) -> FloatArray:
        return self._propagate(t_s)[0]

    def velocities_km_s(self, t_s: npt.ArrayLike) -> FloatArray:
        return self._propagate(t_s)[1]


def load_tle_file(path: str | Path, epoch: datetime | None = None) -> TleConstellation:
    """A constellation from a TLE file (optional name line before each pair). Mission time 0 is
    ``epoch`` (default: the latest element epoch in the file). Raises ValueError on a malformed file."""
    lines = [ln.rstrip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    orbits: list[TleOrbit] = []
    names: list[str] = []
    i = 0
    while i < len(lines):
        name = None
        if not lines[i].startswith("1 "):
            name, i = lines[i].strip(), i + 1
        if i + 1 >= len(lines) or not lines[i].startswith("1 ") or not lines[i + 1].startswith("2 "):
            raise ValueError(f"{path}: expected a TLE line pair at line {i + 1}")
        orbit = TleOrbit(lines[i], lines[i + 1])
        orbits.append(orbit)
        names.append(name or orbit.satrec.satnum_str)
        i += 2
    if epoch is None:
        jd = max(o.epoch_jd + o.epoch_fr for o in orbits)
        epoch = datetime(2000, 1, 1, 12, tzinfo=UTC) + timedelta(days=jd - J2000_JD)
    return TleConstellation(orbits, names, epoch)
