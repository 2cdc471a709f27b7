"""Each fleet dispatch policy's routing and onboard decisions on hand-made cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hil.fleet.policies import (
    LeastQueuePolicy,
    MarginalCostPolicy,
    OrbitdPolicy,
    PriorityPolicy,
    RoundRobinPolicy,
)
from hil.fleet.sim import DROPPED, QUEUED, FleetPolicy, FleetScenario, FleetSim
from tests.fleet_support import hand_scenario, job


def _bound(policy: FleetPolicy, sc: FleetScenario) -> FleetSim:
    sim = FleetSim(sc, policy)
    policy.bind(sim)
    return sim


def test_round_robin_cycles_over_the_fleet() -> None:
    jobs = [job(i, 5, 0.0, 3600.0, 100.0) for i in range(8)]
    sc = hand_scenario(np.ones((4, 6)), jobs, [3] * 8)
    pol = RoundRobinPolicy()
    _bound(pol, sc)
    assert [pol.route(j, 0.0) for j in range(8)] == [0, 1, 2, 3, 4, 5, 0, 1]


def test_least_queue_picks_the_least_work_then_the_nearest() -> None:
    sc = hand_scenario(np.ones((4, 6)), [job(0, 5, 0.0, 3600.0, 100.0)], [0])
    pol = LeastQueuePolicy()
    sim = _bound(pol, sc)
    # Walker 6/2/0: sats 0-2 in plane 0, 3-5 in plane 1; from sat 0, sat 3 is 1 hop, sat 4 is 2
    sim.committed[:, 0] = [900.0, 500.0, 300.0, 200.0, 200.0, 250.0]
    assert pol.route(0, 0.0) == 3  # 200 core-s at 1 hop beats 200 at 2 hops
    sim.remaining[3] = 60.0  # its running job counts too
    assert pol.route(0, 0.0) == 4


def test_priority_keeps_each_job_on_its_entry_satellite_and_runs_highest_first() -> None:
    jobs = [job(0, 1, 0.0, 7200.0, 300.0), job(1, 9, 0.0, 7200.0, 300.0), job(2, 5, 0.0, 7200.0, 300.0)]
    sc = hand_scenario(np.ones((4, 6)), jobs, [2, 2, 2])
    pol = PriorityPolicy()
    sim = _bound(pol, sc)
    assert [pol.route(j, 0.0) for j in range(3)] == [2, 2, 2]
    for j in range(3):
        sim.send(j, 2, 2, 0.0, queued=False)
    assert [pol.pick(2, 0.0), pol.pick(2, 0.0), pol.pick(2, 0.0)] == [1, 2, 0]


def test_marginal_cost_rises_steeply_near_the_limits() -> None:
    sc = hand_scenario(np.ones((4, 6)), [job(0, 5, 0.0, 3600.0, 100.0)], [0])
    pol = MarginalCostPolicy()
    sim = _bound(pol, sc)
    tel = dataclasses.replace(sim.telemetry, soc=np.array([1.0, 0.65, 0.4, 0.31, 0.30, 0.65]),
                              board_c=np.array([20.0, 20.0, 20.0, 20.0, 20.0, 84.9]),
                              radiator_c=np.full(6, 10.0))
    cost = pol.marginal_cost(tel)
    assert cost[0] == pytest.approx(0.0)
    assert cost[1] == pytest.approx(1.0)  # the middle of the usable battery costs the lowest value
    assert cost[2] == pytest.approx(6.0)
    assert cost[3] == pytest.approx(69.0)
    assert cost[4] == np.inf
    assert cost[5] == pytest.approx(1.0 + (85.0 - 20.0) / 0.1 - 1.0)


def test_marginal_cost_executes_only_above_the_cost_and_offloads_to_a_cheaper_neighbour() -> None:
    jobs = [job(0, 4, 0.0, 7200.0, 300.0), job(1, 6, 0.0, 7200.0, 300.0)]
    sc = hand_scenario(np.ones((4, 6)), jobs, [0, 0])
    pol = MarginalCostPolicy()
    sim = _bound(pol, sc)
    soc = np.full(6, 0.9)
    soc[0] = 0.4  # lambda = 6 on sat 0
    tel = dataclasses.replace(sim.telemetry, soc=soc)
    sim.send(0, 0, 0, 0.0, queued=False)  # value per tile 5 < 6: shed
    assert pol.allowed(0.0, tel)[0] == 0.0
    assert pol.pick(0, 0.0) is None
    sim.send(1, 0, 0, 0.0, queued=False)  # value 7 > 6: runs, flat out
    assert pol.allowed(0.0, tel)[0] == sim.cores
    # the neighbours (lambda 0.17) are far cheaper: the next queued task moves over one ISL hop
    pol.rebalance(0.0)
    moved = [j for j in (0, 1) if sim.where[j] != 0]
    assert moved == [1] and sc.constellation.hops[0, sim.where[1]] == 1 and sim.offloads[1] == 1


def test_orbitd_routes_to_the_satellite_that_can_meet_the_deadline() -> None:
    # job 0: 1200 core-s (14.6 GB of tiles: 117 s per hop at 1 Gbit/s), deadline 1000 s
    jobs = [job(0, 5, 0.0, 1000.0, 1200.0), job(1, 5, 0.0, 900.0, 1000.0)]
    sc = hand_scenario(np.ones((4, 6)), jobs, [0, 0])
    pol = OrbitdPolicy()
    sim = _bound(pol, sc)
    pol.allowed(0.0, sim.telemetry)
    pol.tau[:] = 3000.0  # everyone sunlit for 50 more minutes
    pol.r_now[:] = pol.r_now_exempt[:] = 2.0
    pol.r_now[0] = pol.r_now_exempt[0] = 0.0  # the entry satellite has no budget (a low battery in eclipse)
    hops = sc.constellation.hops[0]
    first = pol.route(0, 0.0)
    assert hops[first] == 1  # the nearest satellite with budget: 117 + 600 s
    # every 1-hop satellite behind 1000 core-s would finish at 117 + 1100 s > 1000 s: go 2 hops
    sim.committed[hops == 1, :] = 1000.0
    assert hops[pol.route(0, 0.0)] == 2
    # no satellite can make it: the job still goes where it would finish first
    sim.committed[hops == 2, :] = 5000.0
    assert hops[pol.route(0, 0.0)] == 1
    # job 1 (1000 core-s, deadline 900 s): the entry at 1.2 cores finishes at 833 s; a neighbour at
    # 2 cores at 97 + 500 s over a 1 Gbit/s link, but at 9700 + 500 s over 10 Mbit/s
    sim.committed[:] = 0.0
    pol.r_now[0] = pol.r_now_exempt[0] = 1.2
    assert hops[pol.route(1, 0.0)] == 1
    object.__setattr__(sc, "isl", dataclasses.replace(sc.isl, rate_bps=1e7))
    assert pol.route(1, 0.0) == 0


def test_orbitd_onboard_admission_rejects_defers_and_starts() -> None:
    jobs = [job(0, 9, 0.0, 300.0, 1000.0),   # needs 500 s even at full power: rejected
            job(1, 5, 0.0, 900.0, 1000.0),   # feasible at full power, not within a 1-core budget: deferred
            job(2, 2, 0.0, 7200.0, 500.0)]   # admitted
    sc = hand_scenario(np.ones((4, 6)), jobs, [0, 0, 0])
    pol = OrbitdPolicy()
    sim = _bound(pol, sc)
    pol.allowed(0.0, sim.telemetry)
    d = pol.decision
    assert d is not None
    one_core = sc.governor.board.idle_w + sc.governor.board.w_per_core
    pol.decision = dataclasses.replace(d, busy_cores=np.ones(6), budget_w=np.full(6, one_core),
                                       tier_busy_cores=np.ones((1, 6)), tier_budget_w=np.full((1, 6), one_core))
    for j in range(3):
        sim.send(j, 0, 0, 0.0, queued=False)
    assert pol.pick(0, 0.0) == 2
    assert sim.status[0] == DROPPED and sim.drop_reason[0] == "rejected"
    assert sim.status[1] == QUEUED and 1 in pol.deferred[0]


def test_orbitd_contingency_reserve_is_spent_only_on_urgent_work() -> None:
    # sat 0 in eclipse with its battery inside the contingency band; jobs of both classes queued
    fraction = np.ones((4, 6))
    fraction[:, 0] = 0.0
    jobs = [job(0, 5, 0.0, 7200.0, 300.0), job(1, 9, 0.0, 7200.0, 300.0)]
    sc = hand_scenario(fraction, jobs, [0, 0])
    pol = OrbitdPolicy()
    sim = _bound(pol, sc)
    floor, margin = sc.limits.soc_floor, sc.governor.soc_margin
    soc = np.full(6, 0.9)
    soc[0] = floor + margin + 0.5 * pol.contingency_soc
    cap = float(sim.plant.energy_wh(np.array([1.0]))[0])
    tel = dataclasses.replace(sim.telemetry, soc=soc, battery_wh=soc * cap, sunlit=fraction[0] > 0.5,
                              solar_w=fraction[0] * 150.0, t_orbit_s=np.full(6, 3700.0))
    sim.send(0, 0, 0, 0.0, queued=False)
    assert pol.allowed(0.0, tel)[0] == 0.0  # routine work may not dig into the band
    sim.send(1, 0, 0, 0.0, queued=False)
    assert pol.allowed(0.0, tel)[0] > 0.0  # urgent work may
    assert pol.pick(0, 0.0) == 1
