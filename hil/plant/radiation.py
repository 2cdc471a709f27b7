"""The radiation environment along the orbit: a flux proxy and a single-event-upset rate per Mbit-day.

Sources and model (docs/radiation.md, "Environment"):

- **Field.** |B| from the International Geomagnetic Reference Field, 14th generation (IAGA V-MOD,
  2024, doi:10.5281/zenodo.14012302; the 13th: Alken et al., Earth Planets Space 73, 49, 2021), as the
  pure-Python ``ppigrf`` package evaluates it (geocentric coordinates, degree 13). Vectorised: about
  0.35 s for 8,640 positions (a day at 10 s) and 2 s for 86,400 (a day at 1 s) on the development machine.
- **South Atlantic Anomaly.** Trapped inner-belt protons reach low orbits where the field is weak
  (physics.md, "Radiation"). Proxy: ``saa = exp((B_edge - B) / B_efold) - 1`` where B < B_edge, else 0.
  B_edge = 22,000 nT puts the Hubble Space Telescope's orbit (540 km, 28.5 deg) inside it 15 % of the
  time, the share commonly quoted for HST; B_efold = 1,000 nT (an assumption of this model) makes the
  core of the anomaly (about 18,000 nT at 550 km) read about 50 times its edge.
- **High latitudes.** Galactic cosmic rays (and solar particles) reach where the geomagnetic cutoff is
  low. Störmer vertical cutoff of a dipole, Rc = 14.9 GV / L^2 with L = (r/R_E) / cos^2(lambda_m) and the
  dipole latitude lambda_m from IGRF's degree-1 terms (Smart & Shea, Adv. Space Res. 36, 2005). Proxy:
  the share of an integral rigidity spectrum J(>R) ~ (R0 + R)^-1.7 (differential index 2.7 above a few
  GV) that passes the cutoff: ``gcr = (R0 / (R0 + Rc))^1.7``, R0 = 2 GV (solar-modulation roll-over, an
  assumption). Trapped electrons of the outer-belt horns are not modelled (few cause upsets in memories).
- **Upset rate.** Alsat-1's commercial SRAM (686 km sun-synchronous, 98.2 deg) saw 4.04e-7 upsets per
  bit-day over 8 years (Bentoutou, "A Review of in-orbit Observations of Radiation-Induced Effects in
  Commercial Memories onboard Alsat-1", 2012); the UoSAT-2 maps put an "overwhelming concentration" of
  upsets in the SAA (Underwood, 1989). The rate at a point is
  ``R_ref * (share * saa / <saa>_ref + (1 - share) * gcr / <gcr>_ref)`` with share = 0.8 (assumption) and
  <.>_ref the means over the Alsat-1 orbit (:func:`calibrate`), so the Alsat-1 orbit average is 4.04e-7
  /bit/day by construction and any other orbit scales with its exposure. ``flux`` is that rate over R_ref:
  1.0 is Alsat-1's average.

Pure: arrays in, arrays out; no clock, no I/O (ppigrf reads its coefficient file once per call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from hil.plant.constants import R_EARTH_KM
from hil.plant.ground_track import GroundTrack, circular_ground_track, tle_ground_track
from hil.plant.orbit import CircularOrbit, TleOrbit
from link.telemetry import B_NT, CUTOFF_GV, FLUX, L_SHELL, UPSET_RATE

FloatArray = npt.NDArray[np.float64]

IGRF_CHUNK = 8640
"""Positions per ppigrf call: its design matrices are n x 195 doubles, so a day at 1 s goes in ten calls."""

DEFAULT_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Field epoch when a scenario names none (IGRF-14 covers 1900-2030)."""

STORMER_GV = 14.9
"""Vertical cutoff rigidity at L = 1 of the present dipole, GV (Smart & Shea 2005: Rc = 14.9 / L^2)."""

MBIT = 1.0e6
"""Bits in a Mbit (SI)."""


@dataclass(frozen=True)
class RadiationParams:
    """The proxy's constants (module docstring gives their sources); ``*_ref_mean`` come from :func:`calibrate`."""

    saa_edge_nt: float = 22_000.0
    saa_efold_nt: float = 1_000.0
    gcr_r0_gv: float = 2.0
    gcr_index: float = 1.7
    reference_rate_per_bit_day: float = 4.04e-7
    reference_saa_share: float = 0.8
    saa_ref_mean: float = 2.3287
    gcr_ref_mean: float = 0.3738


REFERENCE_ORBIT = {"altitude_km": 686.0, "inclination_deg": 98.2}
"""Alsat-1's orbit (Bentoutou 2012), over which the cited rate is the average."""


@dataclass(frozen=True)
class RadiationSample:
    """The environment at n instants: ``b_nt`` (nT), dipole ``l_shell``, ``cutoff_gv`` (GV), the two
    dimensionless proxies ``saa`` and ``gcr``, ``flux`` (1.0 = the reference orbit's mean) and
    ``upset_rate_per_mbit_day`` (upsets per 10^6 bits per day)."""

    b_nt: FloatArray
    l_shell: FloatArray
    cutoff_gv: FloatArray
    saa: FloatArray
    gcr: FloatArray
    flux: FloatArray
    upset_rate_per_mbit_day: FloatArray


def _decimal_year(when: datetime) -> float:
    start = datetime(when.year, 1, 1, tzinfo=UTC)
    end = datetime(when.year + 1, 1, 1, tzinfo=UTC)
    return when.year + (when.astimezone(UTC) - start).total_seconds() / (end - start).total_seconds()


def dipole_pole(epoch: datetime) -> tuple[float, float]:
    """(colatitude, east longitude) in rad of the northern geomagnetic (dipole) pole at ``epoch`` from
    IGRF's g10, g11, h11 (linearly interpolated between the 5-year models)."""
    from ppigrf.ppigrf import read_shc  # the hil extra; imported here so the plant loads without it

    g, h = read_shc()
    years = np.array([_decimal_year(t.to_pydatetime().replace(tzinfo=UTC)) for t in g.index])
    year = _decimal_year(epoch)
    g10 = float(np.interp(year, years, g[(1, 0)].to_numpy()))
    g11 = float(np.interp(year, years, g[(1, 1)].to_numpy()))
    h11 = float(np.interp(year, years, h[(1, 1)].to_numpy()))
    b0 = math.sqrt(g10**2 + g11**2 + h11**2)
    return math.acos(-g10 / b0), math.atan2(-h11, -g11)


def field_strength_nt(track: GroundTrack, epoch: datetime = DEFAULT_EPOCH) -> FloatArray:
    """|B| in nT from IGRF at each position of ``track`` (geocentric), evaluated at ``epoch``."""
    import ppigrf

    when = epoch.astimezone(UTC).replace(tzinfo=None)
    n = track.lat_deg.size
    out = np.empty(n)
    for lo in range(0, n, IGRF_CHUNK):
        hi = min(n, lo + IGRF_CHUNK)
        br, bt, bp = ppigrf.igrf_gc(track.r_km[lo:hi], 90.0 - track.lat_deg[lo:hi], track.lon_deg[lo:hi], when)
        out[lo:hi] = np.sqrt(br**2 + bt**2 + bp**2).reshape(-1)
    return out


class RadiationEnvironment:
    """The environment model at one field epoch: ``sample(track)`` -> :class:`RadiationSample`."""

    def __init__(self, params: RadiationParams | None = None, epoch: datetime = DEFAULT_EPOCH) -> None:
        self.params = params or RadiationParams()
        self.epoch = epoch
        self._pole = dipole_pole(epoch)

    def l_shell(self, track: GroundTrack) -> FloatArray:
        """Dipole McIlwain L: (r / R_E) / cos^2(dipole latitude)."""
        colat0, lon0 = self._pole
        lat = np.radians(track.lat_deg)
        lon = np.radians(track.lon_deg)
        sin_mlat = np.sin(lat) * math.cos(colat0) + np.cos(lat) * math.sin(colat0) * np.cos(lon - lon0)
        cos2 = np.clip(1.0 - sin_mlat**2, 1e-9, None)
        return np.asarray(track.r_km / R_EARTH_KM / cos2, dtype=np.float64)

    def proxies(self, b_nt: FloatArray, l_shell: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(saa, gcr, cutoff_gv) from field strength and L (pure arithmetic)."""
        p = self.params
        saa = np.where(b_nt < p.saa_edge_nt, np.expm1((p.saa_edge_nt - b_nt) / p.saa_efold_nt), 0.0)
        cutoff = STORMER_GV / l_shell**2
        gcr = (p.gcr_r0_gv / (p.gcr_r0_gv + cutoff)) ** p.gcr_index
        return saa, gcr, cutoff

    def sample(self, track: GroundTrack) -> RadiationSample:
        p = self.params
        b = field_strength_nt(track, self.epoch)
        l_shell = self.l_shell(track)
        saa, gcr, cutoff = self.proxies(b, l_shell)
        share = p.reference_saa_share
        flux = share * saa / p.saa_ref_mean + (1.0 - share) * gcr / p.gcr_ref_mean
        rate = flux * p.reference_rate_per_bit_day * MBIT
        return RadiationSample(b, l_shell, cutoff, saa, gcr, flux, rate)


def reference_track(step_s: float = 10.0, days: float = 1.0, nodes: int = 4) -> GroundTrack:
    """Alsat-1's orbit over ``days`` at ``step_s``, repeated from ``nodes`` evenly spaced node longitudes
    (so the average does not depend on where the first orbit crosses the equator)."""
    t = np.arange(0.0, days * 86400.0, step_s)
    tracks = [circular_ground_track(t, node_lon_deg=360.0 * k / nodes, **REFERENCE_ORBIT) for k in range(nodes)]
    return GroundTrack(*(np.concatenate([getattr(tr, f) for tr in tracks]) for f in ("lat_deg", "lon_deg", "r_km")))


def calibrate(params: RadiationParams | None = None, epoch: datetime = DEFAULT_EPOCH) -> tuple[float, float]:
    """(mean saa, mean gcr) over :func:`reference_track`: the values :class:`RadiationParams` carries."""
    env = RadiationEnvironment(params, epoch)
    track = reference_track()
    saa, gcr, _ = env.proxies(field_strength_nt(track, epoch), env.l_shell(track))
    return float(saa.mean()), float(gcr.mean())


def ground_track_for(orbit: CircularOrbit | TleOrbit, t_s: FloatArray, node_lon_deg: float = 0.0) -> GroundTrack:
    """The Earth track of a plant orbit. A circular orbit's frame is tied to the Sun, not the Earth, so its
    ascending node is put over ``node_lon_deg`` at t = 0 (over a day the track sweeps every longitude)."""
    if isinstance(orbit, TleOrbit):
        return tle_ground_track(orbit, t_s)
    return circular_ground_track(t_s, orbit.altitude_km, orbit.inclination_deg, node_lon_deg)


@dataclass(frozen=True)
class RadiationTable:
    """The environment precomputed on a time grid (like the illumination table): ``at(t)`` looks it up."""

    t_s: FloatArray
    sample: RadiationSample

    @classmethod
    def for_orbit(
        cls, orbit: CircularOrbit | TleOrbit, duration_s: float, step_s: float = 10.0,
        env: RadiationEnvironment | None = None, t0_s: float = 0.0,
    ) -> RadiationTable:
        """The environment from ``t0_s`` to ``t0_s + duration_s`` (mission s) every ``step_s``."""
        t = t0_s + np.arange(0.0, duration_s + step_s, step_s)
        return cls(t, (env or RadiationEnvironment()).sample(ground_track_for(orbit, t)))

    def covers(self, t_s: float) -> bool:
        return bool(self.t_s[0] <= t_s <= self.t_s[-1])

    def at(self, t_s: float) -> dict[str, float]:
        """The channel's values at mission time ``t_s`` (the grid point at or before it; clamped to the grid)."""
        i = int(np.clip(np.searchsorted(self.t_s, t_s, side="right") - 1, 0, self.t_s.size - 1))
        s = self.sample
        return {
            B_NT: float(s.b_nt[i]),
            L_SHELL: float(s.l_shell[i]),
            CUTOFF_GV: float(s.cutoff_gv[i]),
            FLUX: float(s.flux[i]),
            UPSET_RATE: float(s.upset_rate_per_mbit_day[i]),
        }


class RadiationFeed:
    """The environment along a plant orbit, on demand: :meth:`at` computes tables of ``chunk_s`` simulated
    seconds as time advances (IGRF for 6 h at 10 s: about 0.05 s, plus 0.2 s once for the model), so a
    plant running for ever never reads past its table. What the plant service publishes on ``radiation``."""

    def __init__(self, orbit: CircularOrbit | TleOrbit, step_s: float = 10.0, chunk_s: float = 6 * 3600.0,
                 env: RadiationEnvironment | None = None) -> None:
        self.orbit, self.step_s, self.chunk_s = orbit, step_s, chunk_s
        self.env = env
        self._table: RadiationTable | None = None

    def at(self, t_s: float) -> dict[str, float]:
        """The ``radiation`` channel's values at mission time ``t_s`` (link.telemetry's wire order)."""
        if self._table is None or not self._table.covers(t_s):
            if self.env is None:
                self.env = RadiationEnvironment()
            start = math.floor(t_s / self.step_s) * self.step_s
            self._table = RadiationTable.for_orbit(self.orbit, self.chunk_s, self.step_s, self.env, t0_s=start)
        return self._table.at(t_s)
