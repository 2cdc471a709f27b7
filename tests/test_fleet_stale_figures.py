"""A satellite whose routed-by figure is stale is not starved by the ground's routing (docs/fleet.md,
"Stale figures"): the cost model's age and gap weighting, the probe rule of the ground's view, and the
fleet report's starvation flag (all pure: hand-made fleets with worked answers)."""

from __future__ import annotations

import math

import pytest

from flight.governor.costs import CostModel
from ground.fleet.view import PendingJob, fleet_view, route_job
from hil.fleet_sil import FleetSilReport, SatelliteReport, print_fleet_report, starved
from link.messages import DispatchOutlook, Mode, Status

NOW = 10_000.0
HEARTBEAT_S = 0.5  # hil fleet's: a cost estimate is stale after 10 heartbeats = 5 s


def _status(sat: str, cost: float, age_s: float | None, *, busy: float = 2.0, queued_core_s: float = 0.0,
            running: tuple[str, ...] = ()) -> Status:
    committed = [0.0] * 10
    committed[5] = queued_core_s
    outlook = DispatchOutlook(busy_cores=busy, orbit_busy_cores=1.5, in_eclipse=False, phase_left_s=3000.0,
                              mission_rate=300.0, committed_core_s=committed, job_core_s={"tile-fp32": cost},
                              job_cost_age_s={} if age_s is None else {"tile-fp32": age_s})
    return Status(sat=sat, state="online", at_utc=NOW, heartbeat_s=HEARTBEAT_S, mode=Mode.NOMINAL,
                  running=list(running), outlook=outlook)


def _the_issue_fleet(sat5_age_s: float | None) -> dict[str, Status]:
    """Issue 16's run: five satellites with fresh estimates of 0.18-0.37 core-s and work queued, sat5
    idle with budget and an estimate of 1.246 core-s measured under host load ``sat5_age_s`` ago."""
    costs = {"sat1": 0.18, "sat2": 0.22, "sat3": 0.37, "sat4": 0.25, "sat6": 0.30}
    fleet = {sat: _status(sat, c, 1.0, queued_core_s=0.6) for sat, c in costs.items()}
    fleet["sat5"] = _status("sat5", 1.246, sat5_age_s)
    return dict(sorted(fleet.items()))


def _stream(statuses: dict[str, Status], jobs: int, **kw: float) -> tuple[list[str], list[tuple[str, ...]]]:
    """Route ``jobs`` jobs one after the other, each counted as pending where it went (statuses
    unchanged: no heartbeat in between); the choices and who was passed over each time."""
    pending: dict[str, list[PendingJob]] = {sat: [] for sat in statuses}
    chosen, passed = [], []
    for _ in range(jobs):
        view = fleet_view(statuses, NOW, "tile-fp32", 5, pending, **kw)
        route = route_job(view, NOW, NOW + 60.0)
        assert route.sat is not None
        s = statuses[route.sat].outlook
        assert s is not None
        pending[route.sat].append(PendingJob(5, s.job_core_s["tile-fp32"]))
        chosen.append(route.sat)
        passed.append(route.passed_over)
    return chosen, passed


def test_a_stale_high_cost_estimate_gets_an_idle_satellite_a_probe_job() -> None:
    statuses = _the_issue_fleet(sat5_age_s=40.0)  # 80 heartbeats without a run
    view = fleet_view(statuses, NOW, "tile-fp32", 5)
    assert list(view.probes) == ["sat5"] and "40 s old" in view.probes["sat5"]
    route = route_job(view, NOW, NOW + 60.0)
    assert route.sat == "sat5" and "probe" in route.describe()
    # ranked at the fleet's smallest fresh figure (sat1's 0.18 core-s) on 2 idle cores
    assert route.finish_utc["sat5"] == pytest.approx(NOW + 0.18 / 2.0)
    # one probe at a time: once it is pending there sat5 is busy and routed by its own figure again
    chosen, _ = _stream(statuses, 8)
    assert chosen.count("sat5") == 1 and chosen[0] == "sat5"


def test_without_the_probe_rule_the_stale_estimate_starves_the_satellite_and_the_flag_says_so() -> None:
    statuses = _the_issue_fleet(sat5_age_s=40.0)
    chosen, passed = _stream(statuses, 8, stale_cost_heartbeats=math.inf)
    assert "sat5" not in chosen  # what issue 16's run did: no job for sat5, ever
    passed_over = sum("sat5" in p for p in passed)
    assert passed_over == 8 and starved(passed_over, len(chosen))
    # with the rule, only the jobs routed while its probe was outstanding pass it over
    chosen, passed = _stream(statuses, 8)
    assert chosen[0] == "sat5" and sum("sat5" in p for p in passed) == 0


def test_a_fresh_high_estimate_is_routed_by() -> None:
    # measured 1 s ago (2 heartbeats): the satellite really is slow now, and gets no probe
    chosen, _ = _stream(_the_issue_fleet(sat5_age_s=1.0), 8)
    assert "sat5" not in chosen


def test_a_never_measured_estimate_is_stale_too() -> None:
    view = fleet_view(_the_issue_fleet(sat5_age_s=None), NOW, "tile-fp32", 5)
    assert "never measured" in view.probes["sat5"]


def test_no_probe_for_a_busy_satellite_one_without_budget_or_a_fleet_without_fresh_figures() -> None:
    fleet = _the_issue_fleet(sat5_age_s=40.0)
    fleet["sat5"] = _status("sat5", 1.246, 40.0, running=("j1",))
    assert fleet_view(fleet, NOW, "tile-fp32", 5).probes == {}
    fleet["sat5"] = _status("sat5", 1.246, 40.0, busy=0.0)
    assert fleet_view(fleet, NOW, "tile-fp32", 5).probes == {}
    stale = {sat: _status(sat, 0.2 + i / 10, 40.0) for i, sat in enumerate(("a", "b", "c"))}
    assert fleet_view(stale, NOW, "tile-fp32", 5).probes == {}  # no fresh evidence to rank them by


def test_a_probe_never_costs_a_deadline_its_own_figure_would_miss() -> None:
    fleet = _the_issue_fleet(sat5_age_s=40.0)
    fleet["sat5"] = _status("sat5", 1.246, 40.0, busy=0.5)  # by its own figure: 2.5 s
    view = fleet_view(fleet, NOW, "tile-fp32", 5)
    assert "sat5" in view.probes
    assert route_job(view, NOW, NOW + 1.0).sat != "sat5"  # the others meet 1 s; sat5 might not
    assert route_job(view, NOW, NOW + 60.0).sat == "sat5"


def test_cost_estimate_age_and_a_run_after_a_long_gap_weighs_more() -> None:
    costs = CostModel(w_per_core=2.0, alpha=0.2, memory_s=60.0)
    assert costs.age_s("m", 0.0) is None  # the seed: never measured
    costs.observe("m", wall_s=0.623, threads=2, at_s=100.0)  # 1.246 core-s under host load
    assert costs.age_s("m", 130.0) == pytest.approx(30.0)
    # the next run 10 s later: nearly the plain EMA weight
    near = CostModel(w_per_core=2.0, alpha=0.2, memory_s=60.0)
    near.observe("m", wall_s=0.623, threads=2, at_s=100.0)
    w_near = 1 - 0.8 * math.exp(-10 / 60)
    assert near.observe("m", wall_s=0.1, threads=2, at_s=110.0).core_s == pytest.approx(
        (1 - w_near) * 1.246 + w_near * 0.2)
    # ... 10 min later: the old figure has lost nearly all its weight, one probe corrects it
    late = costs.observe("m", wall_s=0.1, threads=2, at_s=700.0)
    assert late.core_s == pytest.approx(0.2, abs=1e-4) and late.samples == 2 and late.at_s == 700.0
    # without times: the plain EMA, as before
    plain = CostModel(w_per_core=2.0, alpha=0.2)
    plain.observe("m", wall_s=0.623, threads=2)
    assert plain.observe("m", wall_s=0.1, threads=2).core_s == pytest.approx(0.8 * 1.246 + 0.2 * 0.2)
    assert plain.age_s("m", 1e9) is None
    with pytest.raises(ValueError, match="memory_s"):
        CostModel(w_per_core=2.0, memory_s=0.0)


def _sat_report(sat: str, passed_over: int) -> SatelliteReport:
    return SatelliteReport(sat=sat, phase_deg=0.0, routed=10, routed_in_eclipse=0, done=10, rerouted_away=0,
                           min_soc=0.5, max_board_c=40.0, mode_s={"nominal": 100.0}, safe_after_startup_s=0.0,
                           violation_s=0.0, compute_energy_wh=1.0, mode_changes=0, passed_over=passed_over,
                           starved=starved(passed_over, 64))


def test_the_fleet_report_flags_a_starved_satellite(capsys: pytest.CaptureFixture[str]) -> None:
    assert not starved(2, 10) and starved(3, 10) and not starved(6, 64) and starved(7, 64)
    report = FleetSilReport(sats=2, scenario="leo", orbits=2.0, warp=300.0, broker="mosquitto", sim_s=11520.0,
                            wall_s=100.0, jobs_submitted=64, jobs_done=64, reroutes=[],
                            satellites={"sat1": _sat_report("sat1", 0), "sat5": _sat_report("sat5", 40)})
    print_fleet_report(report)
    err = capsys.readouterr().err
    assert "sat5 STARVED" in err and "sat5 was starved: passed over 40 times" in err
    assert "sat1 STARVED" not in err
