"""Hand-made fleet scenarios for the fleet tests: chosen sunlight per satellite, chosen jobs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hil.fleet.constellation import IslLink, WalkerConstellation, WalkerSpec
from hil.fleet.illumination import FleetIllumination
from hil.fleet.sim import FleetScenario
from hil.fleet.workload import fleet_jobs
from hil.governor_sim import SimJob, governor_config_for
from hil.scenario import load_scenario

TILE_S = 2.0 / 496.0


def job(i: int, priority: int, arrival_s: float, deadline_s: float | None, core_s: float) -> SimJob:
    """A job of ``core_s`` core-seconds of tiles (rounded to whole tiles)."""
    return SimJob(f"j{i}", priority, arrival_s, deadline_s, max(1, round(core_s / TILE_S)))


def hand_scenario(
    fraction: np.ndarray,
    jobs: Sequence[SimJob],
    entry: Sequence[int],
    walker: WalkerSpec | None = None,
    dt_s: float = 30.0,
    eclipse_fraction: float = 0.37,
    sun_w_m2: float = 1361.0,
    isl: IslLink | None = None,
) -> FleetScenario:
    """A FleetScenario on ``walker``'s ISL grid (default Walker 6/2/0) whose illumination is
    ``fraction`` (steps, N) at ``sun_w_m2``, the nominal-550km plant, and ``jobs`` entering at ``entry``."""
    const = WalkerConstellation(walker or WalkerSpec(6, 2, 0))
    sc = load_scenario("nominal-550km")
    lim = sc.limits
    steps, n = fraction.shape
    assert n == const.n
    ill = FleetIllumination(0.0, dt_s, fraction, fraction * sun_w_m2, fraction * sun_w_m2, np.zeros_like(fraction))
    return FleetScenario(
        constellation=const, plant=sc.config, limits=lim, governor=governor_config_for(sc.build_plant(), lim, dt_s),
        jobs=fleet_jobs(jobs, np.zeros(len(jobs)), np.zeros(len(jobs))), entry=np.asarray(entry, dtype=np.int64),
        illumination=ill, eclipse_fraction=np.full((steps, n), eclipse_fraction),
        last_exit0_s=np.full(n, -100.0), isl=isl or IslLink(), t0_s=0.0, dt_s=dt_s, steps=steps)
