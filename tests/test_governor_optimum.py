"""Offline optimum: closed-form sanity cases and a plan that respects the limits on the real plant."""

from __future__ import annotations

import numpy as np
import pytest

from flight.governor.limits import Limits
from hil.governor_sim import plan_inputs_for
from hil.optimum import PlanInputs, solve
from hil.scenario import load_scenario


def inputs(n: int, solar: float, **kw: float) -> PlanInputs:
    base: dict[str, object] = dict(
        dt_s=60.0, solar_w=np.full(n, solar), bus_w=np.full(n, 35.0), env_w=np.full(n, 5.0),
        energy0_wh=150.0, energy_min_wh=70.0, energy_max_wh=220.0, charge_w_max=100.0,
        eta_charge=1.0, eta_discharge=1.0, idle_w=12.0, w_per_core=35.0, n_cores=2.0,
        board_capacity_j_k=900.0, radiator_capacity_j_k=3600.0, conductance_w_k=3.5,
        radiator_k4_w_k4=0.9 * 5.670374e-8 * 1.0, sink_k=3.0, board0_c=20.0, radiator0_c=10.0,
        board_max_c=85.0, radiator_max_c=60.0)
    base.update(kw)
    return PlanInputs(**base)  # type: ignore[arg-type]


def test_no_eclipse_ample_power_runs_flat_out() -> None:
    plan = solve(inputs(240, solar=200.0))
    assert plan.core_s == pytest.approx(2.0 * 240 * 60.0, rel=1e-6)
    assert np.all(plan.busy_cores > 2.0 - 1e-6)


def test_energy_bound_matches_closed_form() -> None:
    """No sun: all work comes from the battery above E_min: core_s = ((E0 - Emin) 3600 eta_d -
    (bus + idle) T) / w_per_core."""
    n = 30
    eta_d = 0.9
    plan = solve(inputs(n, solar=0.0, eta_discharge=eta_d, energy0_wh=120.0))
    t = n * 60.0
    expect = ((120.0 - 70.0) * 3600.0 * eta_d - (35.0 + 12.0) * t) / 35.0
    assert plan.core_s == pytest.approx(expect, rel=1e-6)
    assert plan.energy_wh[-1] == pytest.approx(70.0, abs=1e-6)


def test_workload_bounds_the_plan() -> None:
    n = 60
    arrivals = np.zeros(n)
    arrivals[10] = 500.0  # 500 core-s arrive at step 10
    plan = solve(inputs(n, solar=200.0, work_arrival_core_s=arrivals))  # type: ignore[arg-type]
    assert plan.core_s == pytest.approx(500.0, rel=1e-6)
    assert np.all(plan.busy_cores[:10] < 1e-9)


def test_thermal_bound_binds_with_a_small_radiator() -> None:
    plan = solve(inputs(600, solar=300.0, radiator_k4_w_k4=0.9 * 5.670374e-8 * 0.15))
    assert plan.core_s < 0.9 * 2.0 * 600 * 60.0
    assert plan.board_c.max() <= 85.0 + 1e-6 and plan.radiator_c.max() <= 60.0 + 1e-6


def test_plan_respects_limits_on_the_real_plant() -> None:
    """The degraded-radiator plan (thermally bound), replayed through the non-linear plant."""
    sc = load_scenario("degraded-radiator")
    lim = Limits(sc.limits.soc_floor, 13.2, sc.limits.board_max_c, sc.limits.radiator_max_c)
    hours = 6
    plan = solve(plan_inputs_for(sc.build_plant(), hours * 3600.0, 60.0, lim))
    plant = sc.build_plant()
    worst_board = worst_rad = -1e9
    min_soc = 1.0
    for i in range(hours * 60):
        s = plant.step(60.0, busy_cores=float(plan.busy_cores[i]))
        worst_board, worst_rad = max(worst_board, s.board_c), max(worst_rad, s.radiator_c)
        min_soc = min(min_soc, s.soc)
    assert worst_board <= lim.board_max_c
    assert worst_rad <= lim.radiator_max_c
    assert min_soc >= lim.soc_floor
    assert worst_board > lim.board_max_c - 5.0  # and it is actually thermally bound
