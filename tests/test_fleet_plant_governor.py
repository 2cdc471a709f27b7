"""The fleet's vectorised plant and governor budget against hil/plant and flight/governor."""

from __future__ import annotations

import numpy as np
import pytest

from flight.governor.governor import Governor, Sample
from flight.governor.limits import Limits
from hil.fleet.governor import FleetGovernor, FleetTelemetry
from hil.fleet.plant import FleetPlant
from hil.fleet.policies import whenever_possible
from hil.governor_sim import FullThrottlePolicy, governor_config_for
from hil.plant.plant import PlantState
from hil.plant.telemetry import channel_values
from hil.scenario import load_scenario


def _one(x: float | bool) -> np.ndarray:
    return np.array([x])


def _telemetry(st: PlantState) -> FleetTelemetry:
    return FleetTelemetry(st.t_s, _one(st.soc), _one(st.battery_v), _one(st.battery_wh), _one(st.solar_w),
                          _one(st.bus_w), _one(st.compute_w), _one(st.sunlit), _one(st.board_c),
                          _one(st.radiator_c), _one(st.period_s), _one(st.eclipse_fraction), _one(st.t_orbit_s))


@pytest.mark.parametrize("scenario", ["nominal-550km", "high-beta"])
def test_fleet_plant_steps_like_plant_for_one_satellite(scenario: str) -> None:
    sc = load_scenario(scenario)
    plant = sc.build_plant()
    fleet = FleetPlant(sc.config, 3)
    dt, n = 30.0, 900  # 7.5 h: charge taper, eclipses, the beta change of high-beta
    avg = plant.table.averages(dt * np.arange(n + 1))
    busy = np.random.default_rng(4).uniform(0.0, 2.0, n)
    worst = 0.0
    for i in range(n):
        st = plant.step(dt, busy_cores=float(busy[i]))
        f = fleet.step(dt, np.full(3, avg.fraction[i]), np.full(3, avg.sun_w_m2[i]),
                       np.full(3, avg.zenith_sun_w_m2[i]), np.full(3, sc.config.board.compute_w(float(busy[i]))))
        for name in ("soc", "battery_v", "battery_a", "battery_wh", "solar_w", "shunt_w", "compute_w",
                     "unserved_w", "board_c", "radiator_c"):
            got = getattr(f, name)
            assert np.all(got == got[0])
            worst = max(worst, abs(float(got[0]) - float(getattr(st, name))))
    assert worst < 1e-8
    assert plant.state.soc < 0.95  # the run discharged and recharged: not a trivial trajectory


@pytest.mark.parametrize(("scenario", "binds"), [("nominal-550km", "energy"), ("degraded-radiator", "thermal")])
def test_fleet_governor_decides_like_the_flight_governor(scenario: str, binds: str) -> None:
    """Closed loop (nominal: the eclipse reserve binds; degraded-radiator: the thermal budget binds
    after the emissivity loss): the real Governor drives the plant; the fleet governor, fed the same
    telemetry, allows the same cores."""
    sc = load_scenario(scenario)
    plant = sc.build_plant()
    lim = sc.limits
    cfg = governor_config_for(plant, lim, 30.0)
    gov, fleet = Governor(cfg), FleetGovernor(cfg, 1, reserve_tiers=(0.0, 0.2))
    st = plant.state
    compared, binding = 0, set()
    for _ in range(1500):
        d = gov.update(st.t_s, [Sample(ch, st.t_s, v) for ch, v in channel_values(st).items()])
        f = fleet.update(_telemetry(st))
        if d.mode.value != "safe":
            compared += 1
            binding.add(d.binding)
            assert f.busy_cores[0] == pytest.approx(d.busy_cores, abs=1e-9)
            assert f.budget_w[0] == pytest.approx(d.budget_w, abs=1e-9)
            assert f.tier_busy_cores[0, 0] == pytest.approx(d.busy_cores, abs=1e-9)  # a 0 tier is the governor
            assert f.tier_busy_cores[1, 0] <= f.busy_cores[0] + 1e-12  # a higher reserve never allows more
        st = plant.step(30.0, busy_cores=d.busy_cores)
    assert compared > 1400
    assert binds in binding


def test_run_whenever_possible_is_the_full_throttle_rule() -> None:
    sc = load_scenario("nominal-550km")
    lim = Limits(0.30, 13.2, 85.0, 70.0)
    ref = FullThrottlePolicy(lim, 2.0)
    base = sc.build_plant().state
    cases = [dict(soc=0.5), dict(soc=0.30), dict(soc=0.29), dict(battery_v=13.2), dict(battery_v=13.3),
             dict(board_c=85.0), dict(board_c=84.9), dict(radiator_c=70.0), dict(radiator_c=69.0)]
    for kw in cases:
        st = PlantState(**{**{f: getattr(base, f) for f in base.__slots__}, **kw})  # type: ignore[arg-type]
        got = whenever_possible(_telemetry(st), lim, 2.0)[0]
        assert got == ref.control(st.t_s, st).busy_cores, kw
