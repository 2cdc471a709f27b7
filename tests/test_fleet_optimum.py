"""The fleet LP upper bound: closed-form tiny instances, and above every policy on a small fleet."""

from __future__ import annotations

import numpy as np
import pytest

from hil.fleet.optimum import fleet_upper_bound
from hil.fleet.policies import POLICIES, make_policy
from hil.fleet.sim import FleetSim
from hil.governor_sim import plan_inputs_for
from hil.plant.plant import Plant
from tests.fleet_support import hand_scenario, job
from tests.test_fleet_sim import _scenario


def test_ample_sunlight_the_bound_is_set_by_windows_and_one_executor_per_job() -> None:
    jobs = [job(0, 9, 0.0, 600.0, 1000.0),      # fits its window: all of it
            job(1, 5, 0.0, 900.0, 5000.0),      # at most 2 cores x 900 s of it
            job(2, 0, 300.0, None, 100.0)]      # no deadline: all of it
    sc = hand_scenario(np.ones((40, 6)), jobs, [0, 1, 2], sun_w_m2=5000.0)  # 550 W per satellite
    bound = fleet_upper_bound(sc, 300.0)
    v, w = sc.jobs.value, sc.jobs.core_s
    assert bound.goodput == pytest.approx(v[0] + v[1] * 1800.0 / w[1] + v[2], rel=1e-6)
    assert bound.job_core_s == pytest.approx([w[0], 1800.0, w[2]], rel=1e-6)


def test_in_darkness_the_bound_is_the_battery_above_the_floor() -> None:
    jobs = [job(i, 5, 0.0, None, 1e6) for i in range(12)]
    sc = hand_scenario(np.zeros((240, 6)), jobs, [0] * 12)  # 2 h without sunlight
    bound = fleet_upper_bound(sc, 300.0)
    pin = plan_inputs_for(Plant(sc.plant), 300.0, 300.0, sc.limits)
    horizon = 7200.0
    per_sat_j = (pin.energy0_wh - pin.energy_min_wh) * 3600.0 * pin.eta_discharge
    core_s = (per_sat_j - (sc.plant.loads.bus_w + pin.idle_w) * horizon) / pin.w_per_core
    assert 0.0 < core_s < 2.0 * horizon  # energy binds, not the cores
    assert bound.work_core_s == pytest.approx(6 * core_s, rel=1e-6)
    assert bound.energy_wh[:, -1] == pytest.approx(np.full(6, pin.energy_min_wh), rel=1e-6)


def test_the_bound_is_above_every_policy() -> None:
    sc = _scenario(seed=5, hours=8.0)
    bound = fleet_upper_bound(sc, 300.0)
    goodput = {name: FleetSim(sc, make_policy(name)).run().goodput for name in POLICIES}
    for name, g in goodput.items():
        assert g <= bound.goodput, name
    assert goodput["orbitd"] >= 0.8 * bound.goodput  # a policy comes close: the bound is not slack
