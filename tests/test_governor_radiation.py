"""The governor schedules redundancy by orbit (issue 15): while the ``radiation`` channel reads a flux
proxy above ``radiation.high_flux`` every job runs at least DMR, and admission control counts the extra
runs (time and energy) in the budget. Pure: plain samples in, decisions out."""

from __future__ import annotations

import pytest

from flight.governor import Governor, GovernorConfig, QueuedJob, RunningJob, Sample
from flight.governor.admission import Allocation, committed_core_s, plan_dispatch
from flight.governor.config import RadiationPolicy
from flight.governor.costs import CostModel, checked_units
from link.messages import Mode, Redundancy

RAD = {"b_nt": 20_000.0, "l_shell": 1.2, "cutoff_gv": 10.0, "upset_rate_per_mbit_day": 1.0}


def governor(**policy: object) -> Governor:
    """No required channel and no limit: NOMINAL at full power once the (zero) SAFE dwell has passed."""
    return Governor(GovernorConfig(telemetry_period_s=1.0, stale_periods=2.0, required_channels=(), limits=[],
                                   safe_min_dwell_s=0.0, radiation=RadiationPolicy(**policy)))  # type: ignore[arg-type]


def radiation(t: float, flux: float) -> Sample:
    return Sample("radiation", t, {**RAD, "flux": flux})


def test_high_flux_raises_the_floor_and_a_stale_or_absent_sample_does_not() -> None:
    gov = governor()
    assert gov.update(0.0, []).redundancy is Redundancy.NONE  # no radiation channel at all
    d = gov.update(1.0, [radiation(1.0, 11.0)])
    assert d.mode is Mode.NOMINAL and d.redundancy is Redundancy.DMR
    assert any("flux 11.00 > 1" in r for r in d.reasons)
    assert gov.update(2.0, [radiation(2.0, 1.0)]).redundancy is Redundancy.NONE  # at the threshold: not above
    gov.update(3.0, [radiation(3.0, 5.0)])
    assert gov.update(5.0, []).redundancy is Redundancy.DMR  # 2 s old: still fresh (2 periods)
    assert gov.update(5.5, []).redundancy is Redundancy.NONE  # stale: it raises nothing
    # an unreadable flux is never used
    assert gov.update(6.0, [radiation(6.0, float("nan"))]).redundancy is Redundancy.NONE


def test_policy_threshold_mode_and_off() -> None:
    assert governor(high_flux=20.0).update(0.0, [radiation(0.0, 11.0)]).redundancy is Redundancy.NONE
    assert governor(mode="tmr").update(0.0, [radiation(0.0, 11.0)]).redundancy is Redundancy.TMR
    assert governor(mode="none").update(0.0, [radiation(0.0, 50.0)]).redundancy is Redundancy.NONE


def test_admission_counts_the_runs_of_each_jobs_mode() -> None:
    costs = CostModel(w_per_core=2.5)
    c = costs.estimate("m")
    assert checked_units(2.0, Redundancy.NONE) == 2.0 and checked_units(2.0, Redundancy.DMR) == 4.0
    assert checked_units(1.0, Redundancy.TMR) == 3.0
    # 1 busy core, 10 W above idle: the energy limit binds for none of these
    alloc = Allocation(1, 1, 1.0, budget_w=13.0, idle_w=3.0, full_cores=2.0)
    jobs = [QueuedJob("a", 5, "m", 0.0, units=10.0), QueuedJob("b", 5, "m", 0.0, units=10.0,
                                                                  redundancy=Redundancy.DMR)]
    plain = plan_dispatch(0.0, jobs, [], alloc, costs)
    finish = {v.job.job_id: v.finish_estimate_s for v in plain.verdicts}
    assert finish["a"] == pytest.approx(10 * c.core_s)  # its own work at 1 busy core
    assert finish["b"] == pytest.approx(10 * c.core_s + 20 * c.core_s)  # behind a, twice its own work
    raised = plan_dispatch(0.0, jobs, [], alloc, costs, floor=Redundancy.DMR)
    finish = {v.job.job_id: v.finish_estimate_s for v in raised.verdicts}
    assert finish["a"] == pytest.approx(20 * c.core_s) and finish["b"] == pytest.approx(40 * c.core_s)
    # a job that fits its deadline alone but not under DMR is deferred when the floor is raised
    tight = [QueuedJob("t", 5, "m", 0.0, deadline_s=15 * c.core_s, units=10.0)]
    assert [j.job_id for j in plan_dispatch(0.0, tight, [], alloc, costs).start] == ["t"]
    assert [j.job_id for j, _ in plan_dispatch(0.0, tight, [], alloc, costs, floor=Redundancy.DMR).defer] == ["t"]
    # running work ahead counts its runs too
    running = [RunningJob("r", "m", units=10.0, redundancy=Redundancy.TMR)]
    ahead = plan_dispatch(0.0, jobs[:1], running, Allocation(2, 1, 1.0, 23.0, 3.0, 2.0), costs)
    assert ahead.verdicts[0].finish_estimate_s == pytest.approx((30 + 10) * c.core_s / 2)  # 2 busy cores


def test_dispatch_applies_the_last_decisions_floor() -> None:
    gov = governor()
    gov.update(0.0, [])
    d = gov.update(1.0, [radiation(1.0, 11.0)])
    assert d.mode is Mode.NOMINAL and d.busy_cores == 2.0 and d.budget_w == pytest.approx(8.0)  # 3 W + 2 x 2.5 W
    c = gov.costs.estimate("m")
    plan = gov.dispatch(0.0, [QueuedJob("a", 5, "m", 0.0, units=5.0)], [])
    assert plan.verdicts[0].finish_estimate_s == pytest.approx(max(10 * c.core_s / 2.0, 10 * c.energy_j / 5.0))


def test_committed_work_in_the_outlook_counts_redundant_runs() -> None:
    """Status.outlook's committed_core_s / running_core_s (what a fleet dispatcher routes by) count a job's
    DMR/TMR runs, as admission control does: a satellite running everything twice has twice the work."""
    costs = CostModel(w_per_core=2.5)
    core_s = costs.estimate("m").core_s
    queued = [QueuedJob("a", 3, "m", 0.0, units=4.0), QueuedJob("b", 3, "m", 0.0, units=4.0, redundancy=Redundancy.DMR),
              QueuedJob("c", 7, "m", 0.0, units=1.0, redundancy=Redundancy.TMR)]
    running = [RunningJob("r", "m", units=2.0, done_fraction=0.5, redundancy=Redundancy.DMR)]
    per_priority, running_core_s = committed_core_s(queued, running, costs)
    assert per_priority[3] == pytest.approx((4 + 8) * core_s) and per_priority[7] == pytest.approx(3 * core_s)
    assert sum(per_priority) == pytest.approx(15 * core_s)
    assert running_core_s == pytest.approx(2 * core_s)  # half of 2 units x 2 runs
