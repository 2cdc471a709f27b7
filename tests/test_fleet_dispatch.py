"""The fleet routing arithmetic shared by the simulator and the real ground dispatcher, the view of the
fleet from retained statuses, and the re-route rule (all pure: hand-made cases with worked answers)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from flight.governor import Governor, Sample
from flight.governor.admission import RunningJob, committed_core_s
from flight.governor.budget import phase_left_s, sustainable_busy_cores
from flight.governor.costs import CostModel
from flight.queue_policy import QueuedJob
from ground.fleet.dispatch import ahead_by_priority, choose_satellite, predicted_finish_s
from ground.fleet.reroute import JobCourse, Step
from ground.fleet.view import PendingJob, fleet_view, route_job
from hil.fleet.policies import OrbitdPolicy
from hil.fleet.sim import FleetSim
from link.codec import WireError, decode
from link.messages import DispatchOutlook, JobState, Mode, Status
from tests.fleet_support import hand_scenario, job

# ------------------------------------------------------------------------------------ the formula


def test_predicted_finish_within_the_phase_and_beyond_it() -> None:
    # work 1 at 2 cores now: 0.5 s; work 5 with 2 s left at 1 core: 2 s + (5 - 2) / 0.5 = 8 s; an input
    # arriving 3 s late shifts everything by 3 s
    finish = predicted_finish_s(10.0, [1.0, 5.0, 5.0], [2.0, 1.0, 1.0], [4.0, 2.0, 2.0], [1.0, 0.5, 0.5],
                                [0.0, 0.0, 3.0])
    np.testing.assert_allclose(finish, [10.5, 18.0, 21.0])


def test_no_rate_is_never_and_an_unknown_phase_keeps_the_current_rate() -> None:
    inf = math.inf
    finish = predicted_finish_s(0.0, [1.0, 1.0, 1.0, 4.0], [0.0, 0.0, 2.0, 0.0], [inf, 3.0, inf, 2.0],
                                [1.0, 0.0, 1.0, 2.0], 0.0)
    # no rate now and no phase end: never (not NaN); no rate now nor later: never; an unknown phase at 2
    # cores: 0.5 s; no rate now but 2 cores after the 2 s phase: 2 + 4 / 2 = 4 s
    assert finish[0] == inf and finish[1] == inf
    np.testing.assert_allclose(finish[2:], [0.5, 4.0])
    assert not np.isnan(finish).any()


def test_choose_the_earliest_that_meets_the_deadline_else_the_earliest() -> None:
    assert choose_satellite([5.0, 3.0, 4.0], math.inf) == 1
    assert choose_satellite([5.0, 3.0, 4.0], 4.5, [True, False, True]) == 2  # 3 is out, 4 meets 4.5
    assert choose_satellite([5.0, 6.0], 1.0) == 0  # none meets it: the earliest
    assert choose_satellite([2.0, 2.0, 1.0], math.inf, [True, True, False]) == 0  # first on a tie
    assert choose_satellite([1.0], math.inf, [False]) is None


def test_ahead_by_priority_is_the_work_at_or_above_each_priority() -> None:
    per = [1.0, 0, 2.0, 0, 0, 0, 0, 0, 4.0, 8.0]
    np.testing.assert_allclose(ahead_by_priority(per), [15, 14, 14, 12, 12, 12, 12, 12, 12, 8])


def test_the_simulators_orbitd_routing_is_the_shared_arithmetic() -> None:
    """OrbitdPolicy.route is choose_satellite over predicted_finish_s of its own state."""
    jobs = [job(0, 5, 0.0, 900.0, 300.0)]
    sc = hand_scenario(np.ones((4, 6)), jobs, [0])
    pol = OrbitdPolicy()
    sim = FleetSim(sc, pol)
    pol.bind(sim)
    pol.allowed(0.0, sim.telemetry)
    sim.committed[:, :6] = np.array([[600.0], [0.0], [50.0], [0.0], [2000.0], [10.0]])
    hops = sc.constellation.hops[0]
    delay = sc.isl.transfer_s(hops, sc.jobs.input_bytes[0])
    work = sim.committed[:, 5] + sim.remaining + sc.jobs.core_s[0]
    want = choose_satellite(predicted_finish_s(0.0, work, pol.r_now, pol.tau, pol.r_orbit, delay), 900.0)
    assert pol.route(0, 0.0) == want
    assert want in (1, 3)  # no backlog: the nearest of the idle ones (1 hop from satellite 0)


# -------------------------------------------------------------------------- the satellite's side


def test_sustainable_busy_cores_worked_example() -> None:
    # 150 W array, 35 W bus, 12 W idle, 35 W a core, 2 cores, eta 0.9, eclipse 40 % of 6000 s:
    # sunlit: (150 - 47) / 35 = 2.94 -> 2 cores, surplus 150 - 47 - 70 = 33 W over 3600 s;
    # eclipse: (33 * 3600 * 0.9 - 47 * 2400) / (35 * 2400) = -0.07 -> 0; orbit: 2 * 0.6 = 1.2 cores
    assert sustainable_busy_cores(150.0, 35.0, 12.0, 35.0, 2, 0.9, 0.4, 6000.0) == pytest.approx(1.2)
    # a bigger array carries compute into the eclipse: surplus 150 W: (150*3600*0.9 - 47*2400)/(35*2400) = 4.44 -> 2
    assert sustainable_busy_cores(267.0, 35.0, 12.0, 35.0, 2, 0.9, 0.4, 6000.0) == pytest.approx(2.0)
    arr = sustainable_busy_cores(150.0, 35.0, 12.0, 35.0, 2, 0.9, np.array([0.4, 0.0]), np.array([6000.0, 6000.0]))
    np.testing.assert_allclose(arr, [1.2, 2.0])  # no eclipse: the sunlit rate all orbit


def test_phase_left_in_sunlight_and_in_eclipse() -> None:
    assert phase_left_s(100.0, 6000.0, 0.4) == pytest.approx(3500.0)  # eclipse from 3600 s
    assert phase_left_s(4000.0, 6000.0, 0.4) == pytest.approx(2000.0)  # in eclipse: to its exit
    assert phase_left_s(6100.0, 6000.0, 0.4) == pytest.approx(3500.0)  # the next orbit


def test_the_governor_outlook_from_its_telemetry() -> None:
    gov = Governor()
    orbit = {"period_s": 6000.0, "eclipse_fraction": 0.4, "t_orbit_s": 4000.0}
    power = {"soc": 0.7, "battery_wh": 30.0, "solar_w": 0.0, "bus_w": 5.0, "sunlit": 0.0}
    gov.update(10.0, [Sample("orbit", 10.0, orbit), Sample("power", 10.0, power),
                      Sample("thermal", 10.0, {"board_c": 60.0, "radiator_c": 30.0})])
    o = gov.outlook(10.0)
    assert o.in_eclipse and o.phase_left_s == pytest.approx(2000.0) and o.soc == 0.7
    assert o.thermal_headroom_c == pytest.approx(min(85.0 - 60.0, 70.0 - 30.0))
    assert o.orbit_busy_cores is None  # no array peak configured and no sunlit sample yet
    gov.update(20.0, [Sample("power", 20.0, {**power, "solar_w": 20.0, "sunlit": 1.0})])
    cfg = gov.config
    want = sustainable_busy_cores(20.0, 5.0, cfg.board.idle_w, cfg.board.w_per_core, cfg.board.n_cores,
                                  cfg.battery.charge_efficiency * cfg.battery.discharge_efficiency, 0.4, 6000.0)
    assert gov.outlook(20.0).orbit_busy_cores == pytest.approx(want)


def test_committed_work_per_priority_and_the_running_remainder() -> None:
    costs = CostModel(2.5)
    costs.observe("m", wall_s=2.0, threads=2)  # 4 core-s a job
    queued = [QueuedJob("a", 9, "m", 0.0), QueuedJob("b", 9, "m", 1.0), QueuedJob("c", 2, "m", 2.0, units=2.0)]
    per, running = committed_core_s(queued, [RunningJob("r", "m", units=1.0, done_fraction=0.25)], costs)
    assert per == [0, 0, 8.0, 0, 0, 0, 0, 0, 0, 8.0] and running == pytest.approx(3.0)


# -------------------------------------------------------------------------------- the ground's view


def _status(sat: str, at: float, *, mode: Mode = Mode.NOMINAL, busy: float = 2.0, left: float | None = 600.0,
            rate: float = 1.0, committed: list[float] | None = None, running_core_s: float = 0.0,
            state: str = "online", models: dict[str, float] | None = None) -> Status:
    outlook = DispatchOutlook(busy_cores=busy, orbit_busy_cores=1.0, in_eclipse=False, phase_left_s=left,
                              mission_rate=rate, committed_core_s=committed or [0.0] * 10,
                              running_core_s=running_core_s, job_core_s=models if models is not None else {"m": 1.0})
    return Status(sat=sat, state=state, at_utc=at, heartbeat_s=1.0, mode=mode, outlook=outlook)  # type: ignore[arg-type]


def test_view_excludes_what_cannot_take_the_job_and_says_why() -> None:
    now = 1000.0
    statuses = {
        "ok": _status("ok", now),
        "safe": _status("safe", now, mode=Mode.SAFE),
        "old": _status("old", now - 10.0),
        "off": _status("off", now, state="offline"),
        "nomodel": _status("nomodel", now, models={"other": 1.0}),
        "none": None,
        "away": _status("away", now),
    }
    view = fleet_view(statuses, now, "m", 5, exclude=["away"])
    assert list(view.eligible) == [True, False, False, False, False, False, False]
    assert view.reasons == {"safe": "SAFE", "old": "status 10.0 s old", "off": "offline",
                            "nomodel": "model m not active onboard", "none": "no status", "away": "re-routed away"}
    route = route_job(view, now, None)
    assert route.sat == "ok" and "safe: SAFE" in route.describe()


def test_view_turns_mission_seconds_into_ground_seconds_and_counts_unseen_work() -> None:
    now = 1000.0
    # warp 200: 600 mission s of sunlight left is 3 wall s, less the status's 0.5 s age
    a = _status("a", now - 0.5, left=600.0, rate=200.0, committed=[0, 0, 0, 0, 0, 0, 2.0, 0, 0, 1.0],
                running_core_s=0.5)
    view = fleet_view({"a": a}, now, "m", priority=5,
                      pending={"a": [PendingJob(7, 3.0), PendingJob(2, 5.0), PendingJob(9, 4.0, acked_utc=now - 1.0)]})
    assert view.tau_s[0] == pytest.approx(2.5)
    # priority >= 5 queued: 2 + 1; running 0.5; unseen: the unacknowledged priority-7 job (3); the
    # priority-9 one was acknowledged before the status was stamped (counted by it); the job itself: 1
    assert view.work_core_s[0] == pytest.approx(2.0 + 1.0 + 0.5 + 3.0 + 1.0)


def test_route_prefers_the_satellite_with_budget_now() -> None:
    now = 0.0
    sun = _status("sun", now, busy=2.0, committed=[0, 0, 0, 0, 0, 2.0, 0, 0, 0, 0])
    dark = _status("dark", now, busy=0.0)  # idle but no budget until its eclipse ends in 600 s
    route = route_job(fleet_view({"dark": dark, "sun": sun}, now, "m", 5), now, None)
    assert route.sat == "sun" and route.finish_utc["sun"] == pytest.approx(1.5)
    assert route.finish_utc["dark"] == pytest.approx(600.0 + 1.0 / 1.0)
    # a deadline only the idle satellite could meet does not exist here; one both miss: the earliest
    assert route_job(fleet_view({"dark": dark, "sun": sun}, now, "m", 5), now, 1.0).sat == "sun"


# ------------------------------------------------------------------------------------- re-routing


def test_reroute_once_after_a_confirmed_cancel() -> None:
    c = JobCourse("j", "a")
    assert c.on_safe(True) is Step.WAIT  # not acknowledged yet: it may still arrive at a
    c.on_state("a", JobState.QUEUED)
    assert c.on_safe(False) is Step.WAIT  # nowhere to go: it waits where it is
    assert c.on_safe(True) is Step.CANCEL
    assert c.on_safe(True) is Step.WAIT  # one cancel at a time
    assert c.on_cancel_reply("cancelled") is Step.RESUBMIT
    c.moved("b")
    assert c.rerouted and c.sats == ["a", "b"] and c.state is None
    assert c.on_state("a", JobState.CANCELLED) is Step.WAIT  # a late message from a: ignored
    c.on_state("b", JobState.QUEUED)
    assert c.on_safe(True) is Step.WAIT  # b goes SAFE too: never a second re-route
    assert not c.failed


def test_a_job_that_started_meanwhile_is_never_rerouted_unless_it_is_cancelled() -> None:
    # cancel answered "cancelling" (it had started), then it finished: followed where it is
    c = JobCourse("j", "a")
    c.on_state("a", JobState.QUEUED)
    assert c.on_safe(True) is Step.CANCEL
    assert c.on_cancel_reply("cancelling") is Step.WAIT
    assert c.on_state("a", JobState.RUNNING) is Step.WAIT
    assert c.on_state("a", JobState.DONE) is Step.WAIT
    assert not c.rerouted and not c.failed
    # "cancelling", then the run stopped: cancelled is the confirmation
    c = JobCourse("j", "a")
    c.on_state("a", JobState.QUEUED)
    c.on_safe(True)
    c.on_cancel_reply("cancelling")
    assert c.on_state("a", JobState.CANCELLED) is Step.RESUBMIT
    # refused (running or done) or no reply: no re-route; requeued by SAFE's preemption: asked again
    c = JobCourse("j", "a")
    c.on_state("a", JobState.QUEUED)
    c.on_safe(True)
    assert c.on_cancel_reply(None) is Step.WAIT
    c.on_state("a", JobState.RUNNING)
    assert c.on_safe(True) is Step.WAIT
    c.on_state("a", JobState.QUEUED)
    assert c.on_safe(True) is Step.CANCEL
    # the reply was lost but the satellite had cancelled it: its cancelled state confirms
    assert c.on_cancel_reply(None) is Step.WAIT
    assert c.on_state("a", JobState.CANCELLED) is Step.RESUBMIT


def test_a_job_cancelled_by_someone_else_fails() -> None:
    c = JobCourse("j", "a")
    c.on_state("a", JobState.QUEUED)
    assert c.on_state("a", JobState.CANCELLED) is Step.WAIT and c.failed
    c = JobCourse("j", "a")
    c.on_state("a", JobState.EXPIRED)
    assert c.failed


@pytest.mark.parametrize(("field", "value"), [
    ("busy_cores", -0.5), ("soc", 1.2), ("mission_rate", 0.0), ("phase_left_s", -1.0), ("running_core_s", -2.0),
    ("committed_core_s", [0.0] * 9), ("committed_core_s", [0.0] * 9 + [-1.0]), ("job_core_s", {"m": -0.1}),
    ("job_cost_age_s", {"m": -1.0}),
])
def test_an_impossible_outlook_is_refused_on_the_wire(field: str, value: object) -> None:
    doc = json.loads(_status("s", 1.8e9).model_dump_json())
    doc["outlook"][field] = value
    with pytest.raises(WireError, match=rf"invalid Status: outlook\.{field}"):
        decode(json.dumps(doc).encode(), Status)
