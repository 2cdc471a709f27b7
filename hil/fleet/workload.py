"""The fleet's job stream: hil/governor_sim.py's workload, with where on Earth each job comes from.

The stream itself is :func:`hil.governor_sim.make_workload` (Poisson arrivals; urgent / routine /
bulk classes with their priorities and deadlines; jobs of ``units`` tiles of the bundled tile model,
value = tiles x (1 + priority)), sized for the whole fleet (``mean_cores`` per satellite x N). Each
job then gets an arrival location, drawn from :class:`DemandRegion` s: Gaussian blobs (lat/lon
standard deviation ``sigma_deg``) with weights. The job's input lies on the satellite whose
sub-satellite point is nearest that place at the arrival time (the one that imaged it, or that the
user uplinked to): its *entry* satellite. Moving it elsewhere costs ISL hops.

Why location matters: demand is not uniform over the Earth (imaging and users concentrate on land,
at mid northern latitudes), so the satellites that pass over those places collect far more work than
the ones over the oceans, and local-only execution leaves part of the fleet idle while the rest
sheds work. ``UNIFORM_DEMAND`` (uniform over the sphere) is the control case.

Input size: ``TILE_BYTES`` per tile (a 3 x 128 x 128 uint8 tile, the tile model's input).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from hil.governor_sim import SimJob, WorkloadSpec, make_workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

TILE_BYTES = 3 * 128 * 128
"""Bytes of one tile of input: 3 x 128 x 128 uint8 (the tile model's input shape, boards-and-runtime.md)."""


@dataclass(frozen=True)
class DemandRegion:
    """Where work comes from: centre ``lat_deg``/``lon_deg``, spread ``sigma_deg`` (deg), ``weight``."""

    name: str
    lat_deg: float
    lon_deg: float
    sigma_deg: float
    weight: float


LAND_DEMAND: tuple[DemandRegion, ...] = (
    DemandRegion("europe", 48.0, 10.0, 7.0, 0.22),
    DemandRegion("east-asia", 33.0, 115.0, 8.0, 0.22),
    DemandRegion("south-asia", 22.0, 80.0, 6.0, 0.14),
    DemandRegion("north-america-east", 39.0, -82.0, 7.0, 0.14),
    DemandRegion("north-america-west", 38.0, -118.0, 5.0, 0.06),
    DemandRegion("south-america", -18.0, -52.0, 8.0, 0.08),
    DemandRegion("africa", 5.0, 20.0, 10.0, 0.08),
    DemandRegion("australia", -30.0, 140.0, 6.0, 0.06),
)
"""Default demand: eight land regions (weights roughly follow population and Earth-observation
tasking; an assumption of this simulator, stated so that it can be changed)."""

UNIFORM_DEMAND: tuple[DemandRegion, ...] = ()
"""No regions: locations uniform over the sphere (the control case where location matters least)."""


FLEET_WORKLOADS: dict[str, WorkloadSpec] = {
    "time-critical": WorkloadSpec(mean_cores=3.0, tiles_min=16384, tiles_max=262144,
                                  urgent_share=0.5, routine_share=0.3),
    "governor-mix": WorkloadSpec(mean_cores=3.0, tiles_min=16384, tiles_max=262144),
}
"""Workloads of the fleet bench (per satellite; :class:`WorkloadSpec`'s deadlines and priorities).
Jobs are scene batches of 16 k - 256 k tiles (66 - 1057 core-s: a few minutes on the 2-core board;
a single 128 x 128 tile job would mean ~10^7 jobs in 72 h), offered at 3 busy cores per satellite,
1.5x what the board can run and about twice what its power sustains, so that power binds.
``time-critical``: half the work urgent (deadline ~30 min), as in Equinox's disaster-response and
maritime-intelligence tasks; ``governor-mix``: bench.governor's class shares (20 % urgent, 50 %
routine, 30 % bulk)."""


@dataclass(frozen=True)
class FleetJobs:
    """The job stream as arrays (index j = job j of ``jobs``): ``arrival_s``, ``deadline_s`` (inf if
    none), ``priority``, ``units`` (tiles), ``core_s`` (true cost, core-seconds), ``value``, ``lat_deg``/``lon_deg``,
    ``input_bytes``. ``jobs`` keeps the :class:`SimJob` s."""

    jobs: list[SimJob]
    arrival_s: FloatArray
    deadline_s: FloatArray
    priority: IntArray
    units: FloatArray
    core_s: FloatArray
    value: FloatArray
    lat_deg: FloatArray
    lon_deg: FloatArray
    input_bytes: FloatArray

    def __len__(self) -> int:
        return len(self.jobs)


def sample_locations(n: int, regions: Sequence[DemandRegion], rng: np.random.Generator) -> tuple[FloatArray,
                                                                                                  FloatArray]:
    """``n`` (lat, lon) pairs, deg: from the regions by weight, or uniform over the sphere if none."""
    if not regions:
        lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
        return lat, rng.uniform(-180.0, 180.0, n)
    w = np.array([r.weight for r in regions], dtype=np.float64)
    pick = rng.choice(len(regions), size=n, p=w / w.sum())
    c_lat = np.array([r.lat_deg for r in regions])[pick]
    c_lon = np.array([r.lon_deg for r in regions])[pick]
    sig = np.array([r.sigma_deg for r in regions])[pick]
    lat = np.clip(c_lat + sig * rng.standard_normal(n), -89.0, 89.0)
    lon = (c_lon + sig * rng.standard_normal(n) + 180.0) % 360.0 - 180.0
    return lat, lon


def make_fleet_workload(
    duration_s: float,
    spec: WorkloadSpec,
    n_sats: int,
    regions: Sequence[DemandRegion] = LAND_DEMAND,
    seed: int = 1,
) -> FleetJobs:
    """A reproducible located job stream for ``n_sats`` satellites, each offered ``spec.mean_cores``
    busy cores of work on average (the stream's total is ``spec.mean_cores * n_sats``)."""
    fleet_spec = replace(spec, mean_cores=spec.mean_cores * n_sats)
    jobs = make_workload(duration_s, fleet_spec, seed=seed)
    lat, lon = sample_locations(len(jobs), regions, np.random.default_rng(seed))
    return fleet_jobs(jobs, lat, lon)


def fleet_jobs(jobs: Sequence[SimJob], lat_deg: npt.ArrayLike, lon_deg: npt.ArrayLike) -> FleetJobs:
    """The arrays of :class:`FleetJobs` for ``jobs`` arriving at (``lat_deg``, ``lon_deg``)."""
    units = np.array([j.units for j in jobs], dtype=np.float64)
    return FleetJobs(
        jobs=list(jobs),
        arrival_s=np.array([j.arrival_s for j in jobs], dtype=np.float64),
        deadline_s=np.array([np.inf if j.deadline_s is None else j.deadline_s for j in jobs], dtype=np.float64),
        priority=np.array([j.priority for j in jobs], dtype=np.int64),
        units=units,
        core_s=np.array([j.core_s for j in jobs], dtype=np.float64),
        value=np.array([j.value for j in jobs], dtype=np.float64),
        lat_deg=np.asarray(lat_deg, dtype=np.float64),
        lon_deg=np.asarray(lon_deg, dtype=np.float64),
        input_bytes=units * TILE_BYTES,
    )
