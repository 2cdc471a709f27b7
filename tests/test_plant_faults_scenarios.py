"""Faults take effect; the bundled scenarios hold the trade-offs docs/plant.md claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from hil.plant import Fault, FaultSchedule, Plant, TelemetryFaults
from hil.plant.telemetry import channel_values
from hil.scenario import list_scenarios, load_scenario

SIGMA = 5.670374e-8
T_ORBIT = 5739.0


def test_bundled_scenarios_load() -> None:
    names = list_scenarios()
    assert {"nominal-550km", "high-beta", "degraded-radiator"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.telemetry_period_s > 0 and sc.limits.soc_floor == pytest.approx(0.30)


def test_emissivity_loss_raises_the_steady_state_to_the_new_quartic_root() -> None:
    sc = load_scenario("nominal-550km")
    healthy = Plant(sc.config)
    faulty = Plant(sc.config, FaultSchedule([Fault("emissivity_loss", t_s=0.0, emissivity=0.45)]))
    for plant in (healthy, faulty):
        plant.thermal.step(0.0, 0.0, 0.0, 0.0, 1.0)
        for _ in range(400):  # drive the thermal model alone to equilibrium in eclipse with 40 W
            plant.thermal.step(20.0, 20.0, 0.0, 0.0, 100.0)
    th = sc.config.thermal
    for plant, eps in ((healthy, 0.90), (faulty, 0.45)):
        heat = 40.0 + eps * th.earth_ir_w_m2 * th.radiator_area_m2
        t = brentq(lambda x, e=eps, q=heat: e * SIGMA * th.radiator_area_m2 * (x**4 - th.sink_k**4) - q, 3.0, 2000.0)
        assert plant.thermal.radiator_k == pytest.approx(t, abs=0.5)
    assert faulty.thermal.radiator_k > healthy.thermal.radiator_k + 20.0


def test_dropout_suppresses_samples_only_in_its_window() -> None:
    tf = TelemetryFaults(FaultSchedule([Fault("dropout", t_s=100.0, until_s=200.0, channel="power")]))
    assert tf.apply(99.0, "power", {"soc": 0.5}) == {"soc": 0.5}
    assert tf.apply(150.0, "power", {"soc": 0.5}) is None
    assert tf.apply(150.0, "thermal", {"board_c": 40.0}) == {"board_c": 40.0}
    assert tf.apply(200.0, "power", {"soc": 0.5}) == {"soc": 0.5}


def test_stuck_and_noisy_sensors() -> None:
    faults = FaultSchedule(
        [
            Fault("stuck", t_s=10.0, measurement="board_c"),
            Fault("noisy", t_s=0.0, measurement="soc", sigma=0.05),
        ]
    )
    tf = TelemetryFaults(faults, seed=1)
    assert tf.apply(5.0, "thermal", {"board_c": 30.0})["board_c"] == 30.0  # type: ignore[index]
    assert tf.apply(10.0, "thermal", {"board_c": 41.0})["board_c"] == 41.0  # type: ignore[index]
    assert tf.apply(500.0, "thermal", {"board_c": 90.0})["board_c"] == 41.0  # type: ignore[index]
    noisy = np.array([tf.apply(float(t), "power", {"soc": 0.5})["soc"] for t in range(4000)])  # type: ignore[index]
    assert noisy.mean() == pytest.approx(0.5, abs=0.005)
    assert noisy.std() == pytest.approx(0.05, rel=0.1)


def test_capacity_fade_string_loss_and_beta_change() -> None:
    sc = load_scenario("nominal-550km")
    faults = FaultSchedule(
        [
            Fault("capacity_fade", t_s=600.0, factor=0.7),
            Fault("solar_string_loss", t_s=600.0, strings=2),
            Fault("beta_change", t_s=3 * T_ORBIT, beta_deg=50.0),
        ]
    )
    plant = Plant(sc.config, faults)
    before = plant.run(599.0, 1.0, busy_cores=0.0)
    after = plant.run(2.0, 1.0, busy_cores=0.0)  # the step starting at t = 600 s sees the faults
    assert after["battery_wh"][-1] == pytest.approx(0.7 * before["battery_wh"][-1], rel=1e-3)
    assert after["solar_w"][-1] == pytest.approx(before["solar_w"][-1] * 4 / 6, rel=1e-6)
    plant.run(3 * T_ORBIT - 601.0, 1.0)
    tr = plant.run(plant.config.orbit.period_s, 1.0)
    f50 = (
        math.acos(math.sqrt(550.0**2 + 2 * 6378.137 * 550.0) / ((6378.137 + 550.0) * math.cos(math.radians(50))))
        / math.pi
    )
    assert 1.0 - float(np.mean(tr["illumination"])) == pytest.approx(f50, rel=0.01)
    assert tr["beta_deg"][-1] == 50.0 and tr["eclipse_fraction"][-1] == pytest.approx(f50, rel=1e-9)


def test_nominal_full_throttle_breaks_the_soc_floor_within_a_few_orbits() -> None:
    sc = load_scenario("nominal-550km")
    tr = sc.build_plant().run(6 * T_ORBIT, 2.0, busy_cores=2.0)
    below = np.nonzero(tr["soc"] < sc.limits.soc_floor)[0]
    assert len(below) and tr["t_s"][below[0]] < 5 * T_ORBIT
    # ...while full compute in sunlight only is sustainable
    ok = sc.build_plant().run(6 * T_ORBIT, 2.0, policy=lambda s: 2.0 if s.sunlit else 0.0)
    assert ok["soc"].min() > sc.limits.soc_floor + 0.2
    assert ok["board_c"].max() < sc.limits.board_max_c


def test_degraded_radiator_full_throttle_in_sunlight_overheats_the_board() -> None:
    sc = load_scenario("degraded-radiator")
    tr = sc.build_plant().run(2 * T_ORBIT, 2.0, policy=lambda s: 2.0 if s.sunlit else 0.0)
    assert tr["board_c"].max() > sc.limits.board_max_c
    light = sc.build_plant().run(2 * T_ORBIT, 2.0, busy_cores=0.5)
    assert light["board_c"].max() < sc.limits.board_max_c


def test_channel_values_follow_the_telemetry_contract() -> None:
    plant = load_scenario("nominal-550km").build_plant()
    values = channel_values(plant.step(1.0, busy_cores=1.0))
    assert {"soc", "battery_v", "battery_a", "battery_wh", "solar_w", "load_w", "bus_w", "compute_w", "sunlit"} <= set(
        values["power"]
    )
    assert {"board_c", "radiator_c"} <= set(values["thermal"])
    assert {"sunlit", "beta_deg", "period_s", "eclipse_fraction", "t_orbit_s"} <= set(values["orbit"])
    assert values["power"]["compute_w"] == pytest.approx(12.0 + 35.0)
