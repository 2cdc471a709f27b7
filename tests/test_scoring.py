"""One scoring of limits for the simulator (bench.governor) and the SIL report (hil/scoring.py).

The agreement test runs the real plant under a policy that breaks several limits, records every
stepped state as the telemetry the plant would publish, and checks that the SIL's report of that
archive and the simulator's own score are the same figures under the same names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flight.governor.limits import Limits
from ground.tlm.archive import Archive, topic_row
from hil.governor_sim import FullThrottlePolicy, WorkloadSpec, make_workload, run_policy
from hil.plant.plant import PlantState
from hil.plant.telemetry import channel_values
from hil.scenario import load_scenario
from hil.scoring import ViolationTally, union_s
from hil.sil import report_from_archive
from link.codec import encode
from link.messages import Telemetry
from link.topics import TopicMap

NAMES = ["soc_floor", "battery_v_floor", "board_ceiling", "radiator_ceiling", "brownout"]


def test_tally_names_and_seconds_by_hand() -> None:
    """Limits 0.30 / 13.2 V / 85 °C / 70 °C; each sample stands for 10 s."""
    tally = ViolationTally(Limits())
    assert list(tally.seconds()) == NAMES and tally.channels == ["power", "thermal"]
    assert tally.observe(0.0, 10.0, {"power": {"soc": 0.5, "battery_v": 13.1, "unserved_w": 0.0}}) == [
        "battery_v_floor"]
    assert tally.observe(10.0, 10.0, {"power": {"soc": 0.29, "battery_v": 12.0, "unserved_w": 3.0}}) == [
        "soc_floor", "battery_v_floor", "brownout"]
    assert tally.observe(10.0, 10.0, {"thermal": {"board_c": 85.5, "radiator_c": 70.0}}) == ["board_ceiling"]
    # on the threshold is not beyond it; a value the sample lacks breaks nothing
    assert tally.observe(20.0, 10.0, {"power": {"soc": 0.30, "battery_v": 13.2}, "thermal": {}}) == []
    assert tally.observe(40.0, 5.0, {"thermal": {"radiator_c": 71.0}}) == ["radiator_ceiling"]
    assert tally.seconds() == {"soc_floor": 10.0, "battery_v_floor": 20.0, "board_ceiling": 10.0,
                               "radiator_ceiling": 5.0, "brownout": 10.0}
    assert list(tally.by_limit) == ["battery_v_floor", "soc_floor", "brownout", "board_ceiling", "radiator_ceiling"]
    assert tally.violation_s == pytest.approx(25.0)  # [0, 20) u [40, 45)


def test_union_of_spans() -> None:
    assert union_s([]) == 0.0
    assert union_s([(0.0, 10.0), (10.0, 10.0), (30.0, 5.0)]) == 25.0
    assert union_s([(5.0, 10.0), (0.0, 10.0), (8.0, 1.0)]) == 15.0  # overlaps and a span inside another


def _archive_of(path: Path, states: list[PlantState]) -> Archive:
    topics = TopicMap("sat1")
    archive = Archive(path, writable=True)
    rows = []
    for s in states:
        for channel, values in channel_values(s).items():
            msg = Telemetry(sat="sat1", channel=channel, t_s=s.t_s, values=values)
            rows.append(topic_row(topics.telemetry(channel), encode(msg), rx_utc=1000.0 + s.t_s))
    archive.append(rows)
    return archive


def test_simulator_and_sil_report_score_the_same_run_alike(tmp_path: Path) -> None:
    sc = load_scenario("degraded-radiator")
    sc = dataclasses.replace(sc, config=dataclasses.replace(sc.config, initial_soc=0.45))
    duration, dt = 6 * 3600.0, 30.0
    plant = sc.build_plant()
    states: list[PlantState] = []
    step = plant.step

    def recorded_step(dt_s: float, busy_cores: float | None = None, compute_w: float | None = None) -> PlantState:
        states.append(step(dt_s, busy_cores=busy_cores, compute_w=compute_w))
        return states[-1]

    plant.step = recorded_step  # type: ignore[method-assign]
    jobs = make_workload(duration, WorkloadSpec(mean_cores=2.0), seed=2)
    res = run_policy(plant, FullThrottlePolicy(sc.limits, 2.0), jobs, duration, dt, sc.limits)
    assert len(states) == round(duration / dt)
    # the run breaks three limits, at times together (so the union is less than the sum)
    assert {k for k, v in res.violation_by_limit.items() if v > 0} == {"soc_floor", "board_ceiling",
                                                                         "radiator_ceiling"}
    assert res.violation_s < sum(res.violation_by_limit.values())

    report = report_from_archive(_archive_of(tmp_path / "a.sqlite3", states), sc, 0, 0, 0.0, 1.0, 1.0)

    assert list(report.violations_s) == NAMES
    for name in NAMES:
        assert report.violations_s[name] == pytest.approx(res.violation_by_limit.get(name, 0.0)), name
    assert report.violation_s == pytest.approx(res.violation_s)
