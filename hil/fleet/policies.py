"""Fleet dispatch policies: where each job runs, how much each satellite computes, what runs next.

Every policy has three parts: the ground dispatcher (``route``: the satellite a new job is sent to;
jobs start on their *entry* satellite, and going elsewhere costs ISL hops), the per-satellite compute
allowance (``allowed``: busy cores per satellite this step) with the onboard scheduler (``pick``), and
optional offload of queued jobs to ISL neighbours (``rebalance``).

* ``round-robin``: job i goes to satellite i mod N. Onboard: runs whenever it can.
* ``least-queue``: to the satellite with the least committed work (queued + in transit + running
  remainder, core-s), the nearest in hops on a tie. Onboard: runs whenever it can.
* ``priority`` (the anchor's baseline, Equinox's "priority-based scheduling"): the job stays on its
  entry satellite, which runs the highest-priority job first (EDF within a class) and runs whenever
  it can. No offload.
* ``marginal-cost`` (in the manner of Equinox, arXiv 2604.19958): each satellite's state is folded
  into a marginal cost of execution that rises steeply near the limits,
      lambda = k_soc * ((1 - floor) / (soc - floor) - 1)                              (inf at the floor)
             + k_temp * sum over board, radiator of max(0, (T_max - T_ref) / (T_max - T) - 1)
  in units of task value per tile (a task's value per unit of its energy is 1 + priority, all tasks
  being tiles of the same model). A task executes only while its value exceeds lambda (flat out),
  otherwise it waits (and expires if lambda stays high: value-ordered load shedding). For offload the
  queue backlog joins the cost, lambda_q = lambda + k_queue * backlog_core_s / (cores * T_orbit), and
  the next queued task moves to the ISL neighbour with the lowest lambda_q when that is below the
  local one by ``offload_margin``. Jobs start on their entry satellite (decentralised, no ground
  routing). Scales: k_soc = 1 puts the cost of the lowest-value task (1) at the middle of the usable
  battery (SoC 0.65 with a 0.30 floor) and of the highest (10) 6 % above the floor; k_temp = 1 the
  same between T_ref = 20 °C and each ceiling; k_queue = 1: one orbit of backlog adds the lowest
  task's value. (Backlog is kept out of the execution cost: there it would stop a congested satellite
  from executing at all, the opposite of load balancing.)
* ``orbitd``: onboard, the governor's budget (:class:`hil.fleet.governor.FleetGovernor`, the vectorised
  flight/governor budget: energy to cross the next eclipse above the reserve, thermal headroom,
  battery-voltage derating) sets the busy cores, and flight/governor/admission.py's ``plan_dispatch``
  (priority classes, EDF, admission control: reject what cannot finish even at full power, defer what
  cannot finish within the budget) picks the job. The ground dispatcher sends each job to the
  satellite with the earliest predicted finish among those predicted to meet its deadline:
      finish_s = t + transfer(hops, bytes) + T(ahead_s + work)
      T(x) = x / r_now                          if x <= r_now * tau   (tau: to the end of this sun/eclipse)
             tau + (x - r_now * tau) / r_orbit  otherwise
  with ahead_s the committed work of priority >= the job's plus the running remainder, r_now the
  satellite's current allowance (its predicted budget to the next eclipse, thermal headroom
  included) and r_orbit its orbit-average sustainable rate (sunlit compute + what the sunlit surplus
  carries through the eclipse at eta_c * eta_d). A deferred job is offloaded to an ISL neighbour where
  it is predicted to meet its deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flight.governor.admission import Allocation
from flight.governor.admission import plan_dispatch as governor_plan_dispatch
from flight.governor.budget import phase_left_s, sustainable_busy_cores
from flight.governor.costs import CostModel
from flight.governor.governor import allocation_for
from flight.governor.limits import Limits
from flight.queue_policy import QueuedJob
from ground.fleet.dispatch import choose_satellite, predicted_finish_s
from hil.fleet.governor import FleetDecision, FleetGovernor, FleetTelemetry
from hil.fleet.sim import QUEUED, FleetSim

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def whenever_possible(tel: FleetTelemetry, limits: Limits, cores: float) -> FloatArray:
    """"Runs whenever it can": all cores unless SoC <= floor, battery V <= floor or a temperature >=
    its ceiling (then none). The vectorised form of hil/governor_sim.py's FullThrottlePolicy."""
    cut = ((tel.soc <= limits.soc_floor) | (tel.battery_v <= limits.battery_v_floor)
           | (tel.board_c >= limits.board_max_c) | (tel.radiator_c >= limits.radiator_max_c))
    return np.where(cut, 0.0, cores)


class _Policy:
    """Shared plumbing: bound simulator, entry routing, run-whenever-possible power, heap-order pick."""

    name = "base"
    retry_s = 0.0

    def bind(self, sim: FleetSim) -> None:
        self.sim = sim
        self.sc = sim.sc
        self.n = sim.n

    def route(self, j: int, now_s: float) -> int:
        return int(self.sc.entry[j])

    def allowed(self, now_s: float, tel: FleetTelemetry) -> FloatArray:
        return whenever_possible(tel, self.sc.limits, self.sim.cores)

    def pick(self, s: int, now_s: float) -> int | None:
        j = self.sim.peek(s, now_s)
        if j is not None:
            self.sim.take(j)
        return j

    def rebalance(self, now_s: float) -> None:
        return None


class RoundRobinPolicy(_Policy):
    name = "round-robin"

    def bind(self, sim: FleetSim) -> None:
        super().bind(sim)
        self.next = 0

    def route(self, j: int, now_s: float) -> int:
        s = self.next
        self.next = (self.next + 1) % self.n
        return s


class LeastQueuePolicy(_Policy):
    name = "least-queue"

    def route(self, j: int, now_s: float) -> int:
        sim = self.sim
        work = sim.committed[:, 0] + sim.remaining
        hops = self.sc.constellation.hops[int(self.sc.entry[j])]
        return int(np.lexsort((hops, work))[0])


class PriorityPolicy(_Policy):
    """Equinox's priority-based baseline: local, highest priority first, runs whenever it can."""

    name = "priority"


@dataclass(frozen=True)
class MarginalCostParams:
    """Scales of the marginal cost (see the module docstring) and the offload rule."""

    k_soc: float = 1.0
    k_temp: float = 1.0
    k_queue: float = 1.0
    t_ref_c: float = 20.0
    offload_margin: float = 0.25
    max_offloads: int = 4


class MarginalCostPolicy(_Policy):
    name = "marginal-cost"

    def __init__(self, params: MarginalCostParams | None = None) -> None:
        self.params = params or MarginalCostParams()

    def bind(self, sim: FleetSim) -> None:
        super().bind(sim)
        self.cost = np.zeros(self.n)
        self.period_s = self.sc.constellation.period_s

    def marginal_cost(self, tel: FleetTelemetry) -> FloatArray:
        """Execution cost lambda per satellite (module docstring), inf at or beyond a limit."""
        p, lim = self.params, self.sc.limits
        with np.errstate(divide="ignore", invalid="ignore"):
            soc_term = np.where(tel.soc > lim.soc_floor, (1.0 - lim.soc_floor) / (tel.soc - lim.soc_floor) - 1.0,
                                math.inf)
            soc_term = np.where(tel.battery_v > lim.battery_v_floor, soc_term, math.inf)
            temp = np.zeros(self.n)
            for t, t_max in ((tel.board_c, lim.board_max_c), (tel.radiator_c, lim.radiator_max_c)):
                term = np.where(t < t_max, (t_max - p.t_ref_c) / (t_max - t) - 1.0, math.inf)
                temp += np.maximum(term, 0.0)
        return p.k_soc * np.maximum(soc_term, 0.0) + p.k_temp * temp

    def placement_cost(self) -> FloatArray:
        """lambda_q = lambda + k_queue * backlog / (cores * T_orbit): the cost compared for offload."""
        sim = self.sim
        backlog = sim.committed[:, 0] + sim.remaining
        return self.cost + self.params.k_queue * backlog / (sim.cores * self.period_s)

    def _next_value(self, now_s: float) -> FloatArray:
        """Value per tile (1 + priority) of the job each executor would run now (0 if none)."""
        sim, prio = self.sim, self.sc.jobs.priority
        out = np.zeros(self.n)
        run = sim.run_job
        for s in range(self.n):
            j = int(run[s]) if run[s] >= 0 else sim.peek(s, now_s)
            if j is not None:
                out[s] = 1.0 + float(prio[j])
        return out

    def allowed(self, now_s: float, tel: FleetTelemetry) -> FloatArray:
        self.cost = self.marginal_cost(tel)
        return np.where(self._next_value(now_s) > self.cost, self.sim.cores, 0.0)

    def pick(self, s: int, now_s: float) -> int | None:
        sim = self.sim
        j = sim.peek(s, now_s)
        if j is None or 1.0 + float(self.sc.jobs.priority[j]) <= self.cost[s]:
            return None
        sim.take(j)
        return j

    def rebalance(self, now_s: float) -> None:
        sim, p = self.sim, self.params
        nb = self.sc.constellation.neighbours
        cost = self.placement_cost()
        nb_cost = cost[nb]
        best = np.argmin(nb_cost, axis=1)
        best_cost = nb_cost[np.arange(self.n), best]
        for s in np.nonzero((sim.queue_len > 0) & (best_cost + p.offload_margin < cost))[0].tolist():
            j = sim.peek(s, now_s)
            if j is None or sim.offloads[j] >= p.max_offloads:
                continue
            dst = int(nb[s, best[s]])
            sim.offloads[j] += 1
            sim.send(j, s, dst, now_s)


@dataclass(frozen=True)
class OrbitdDispatchParams:
    """``top_k``: queued jobs handed to plan_dispatch at once (its verdicts for the first k jobs in
    policy order do not depend on the jobs after them); ``contingency_orbits``: energy kept above
    the governor's SoC margin, in orbits at bus + idle-board load without any sunlight (a safe-mode
    sizing rule: after its worst eclipse a satellite that loses the Sun - a tumble, a missed sun
    acquisition - still lives that long), except that jobs of priority >= ``reserve_exempt_priority``
    (the urgent class, 8-9) may spend it; ``retry_s``: how long an executor whose jobs
    were all deferred waits before asking again (unless a job arrives); ``rebalance_every_s``: how
    often deferred jobs are offered to neighbours; ``max_offloads`` per job."""

    top_k: int = 8
    contingency_orbits: float = 1.0
    reserve_exempt_priority: int = 8
    retry_s: float = 120.0
    rebalance_every_s: float = 300.0
    max_offloads: int = 3


class OrbitdPolicy(_Policy):
    name = "orbitd"

    def __init__(self, params: OrbitdDispatchParams | None = None) -> None:
        self.params = params or OrbitdDispatchParams()
        self.retry_s = self.params.retry_s

    def bind(self, sim: FleetSim) -> None:
        super().bind(sim)
        sc = self.sc
        gov = sc.governor
        idle_orbit_wh = (sc.plant.loads.bus_w + gov.board.idle_w) * float(sc.constellation.period_s.max()) / 3600.0
        self.contingency_soc = self.params.contingency_orbits * idle_orbit_wh / gov.battery.capacity_wh
        self.governor = FleetGovernor(gov, self.n, reserve_tiers=(self.contingency_soc,))
        self.costs = CostModel(sc.governor.board.w_per_core)
        self.decision: FleetDecision | None = None
        self.r_now = np.full(self.n, sim.cores)
        self.r_now_exempt = np.full(self.n, sim.cores)
        self.tau = np.zeros(self.n)
        self.r_orbit = np.full(self.n, sim.cores)
        self.deferred: dict[int, set[int]] = {}
        self._next_rebalance = -math.inf
        board = sc.governor.board
        eta = sc.governor.battery.charge_efficiency * sc.governor.battery.discharge_efficiency
        self.peak_solar_w = sc.plant.array.peak_w(sc.plant.solar_constant_w_m2)
        self._board, self._eta = board, eta

    def orbit_rate(self, eclipse_fraction: FloatArray, period_s: FloatArray) -> FloatArray:
        """Orbit-average sustainable busy cores of every satellite
        (:func:`flight.governor.budget.sustainable_busy_cores`, what flightd's governor reports)."""
        b = self._board
        rate: FloatArray = sustainable_busy_cores(self.peak_solar_w, self.sc.plant.loads.bus_w, b.idle_w, b.w_per_core,
                                                  b.n_cores, self._eta, eclipse_fraction, period_s)
        return rate

    def _next_priority(self, now_s: float) -> npt.NDArray[np.int64]:
        """Priority of the job each executor runs or would start next (-1 if none)."""
        sim, prio = self.sim, self.sc.jobs.priority
        out = np.full(self.n, -1, dtype=np.int64)
        for s in range(self.n):
            j = int(sim.run_job[s]) if sim.run_job[s] >= 0 else sim.peek(s, now_s)
            if j is not None:
                out[s] = prio[j]
        return out

    def allowed(self, now_s: float, tel: FleetTelemetry) -> FloatArray:
        d = self.decision = self.governor.update(tel)
        self.r_now_exempt = d.busy_cores
        self.r_now = d.tier_busy_cores[0]
        ecl, period = tel.eclipse_fraction, tel.period_s
        self.tau = phase_left_s(tel.t_orbit_s, period, ecl)
        self.r_orbit = self.orbit_rate(ecl, period)
        exempt = self._next_priority(now_s) >= self.params.reserve_exempt_priority
        return np.where(exempt, self.r_now_exempt, self.r_now)

    def predicted_finish(self, js: npt.NDArray[np.int64], now_s: float, src: int,
                         cand: npt.NDArray[np.int64] | None) -> FloatArray:
        """Predicted finish times (len(js), len(cand)) of jobs ``js`` (now at ``src``) on each satellite
        of ``cand`` (all if None): :func:`ground.fleet.dispatch.predicted_finish_s`, the arithmetic the
        real fleet's ground dispatcher routes with."""
        sim, jobs = self.sim, self.sc.jobs
        c = np.arange(self.n) if cand is None else cand
        prio = jobs.priority[js]
        # committed work of priority >= p at each candidate, plus its running remainder
        work = sim.committed[c][:, prio].T + sim.remaining[c][None, :] + jobs.core_s[js][:, None]
        exempt = (prio >= self.params.reserve_exempt_priority)[:, None]
        r_now = np.where(exempt, self.r_now_exempt[c][None, :], self.r_now[c][None, :])
        delay = self.sc.isl.transfer_s(self.sc.constellation.hops[src, c][None, :], jobs.input_bytes[js][:, None])
        return predicted_finish_s(now_s, work, r_now, self.tau[c][None, :], self.r_orbit[c][None, :], delay)

    def route(self, j: int, now_s: float) -> int:
        src = int(self.sc.entry[j])
        finish = self.predicted_finish(np.array([j]), now_s, src, None)[0]
        s = choose_satellite(finish, float(self.sc.jobs.deadline_s[j]))
        assert s is not None  # every satellite is a candidate
        return s

    def _allocation(self, s: int, exempt: bool) -> Allocation:
        """The executor allocation of satellite ``s`` for urgent (``exempt``) or other work."""
        sc, sim, d = self.sc, self.sim, self.decision
        board = sc.governor.board
        if d is None:
            busy, budget = sim.cores, board.max_w
        elif exempt:
            busy, budget = float(d.busy_cores[s]), float(d.budget_w[s])
        else:
            busy, budget = float(d.tier_busy_cores[0, s]), float(d.tier_budget_w[0, s])
        conc, threads, duty = allocation_for(busy, board, sc.governor.min_busy_cores)
        return Allocation(conc, threads, duty, budget, board.idle_w, float(board.n_cores))

    def pick(self, s: int, now_s: float) -> int | None:
        """flight/governor's plan_dispatch over the queue head: urgent jobs (which come first in its
        order) at the allocation that may spend the contingency band, the rest at the other."""
        sim, jobs = self.sim, self.sc.jobs
        thr = self.params.reserve_exempt_priority
        k = 1  # the first job's verdict depends on no other: most picks end here
        while True:
            if k == 1:
                head = sim.peek(s, now_s)
                ids = [] if head is None else [head]
            else:
                ids = sim.top(s, now_s, k)
            for exempt in (True, False):
                group = [j for j in ids if (jobs.priority[j] >= thr) == exempt]
                if not group:
                    continue
                queued = [QueuedJob(str(j), int(jobs.priority[j]), "tiles", float(jobs.arrival_s[j]),
                                    float(jobs.deadline_s[j]), float(jobs.units[j])) for j in group]
                plan = governor_plan_dispatch(now_s, queued, [], self._allocation(s, exempt), self.costs)
                for q, _why in plan.reject:
                    sim.drop(int(q.job_id), "rejected")
                if plan.defer:
                    self.deferred.setdefault(s, set()).update(int(q.job_id) for q, _ in plan.defer)
                if plan.start:
                    j = int(plan.start[0].job_id)
                    sim.take(j)
                    return j
                if plan.wait:
                    return None
            if len(ids) < k:
                return None
            k = max(k * 4, self.params.top_k)

    def rebalance(self, now_s: float) -> None:
        """Every ``rebalance_every_s``: offer each satellite's deferred jobs to its ISL neighbours; a job
        moves to the neighbour predicted to finish it earliest if that meets its deadline and the local
        satellite does not (at most one job to each neighbour per round: the predictions do not yet
        include the jobs moved in this round)."""
        if now_s < self._next_rebalance or not self.deferred:
            return
        self._next_rebalance = now_s + self.params.rebalance_every_s
        sim, jobs = self.sim, self.sc.jobs
        nb = self.sc.constellation.neighbours
        deferred, self.deferred = self.deferred, {}
        for s, ids in deferred.items():
            js = np.array(sorted(j for j in ids if sim.status[j] == QUEUED and sim.where[j] == s
                                 and sim.offloads[j] < self.params.max_offloads), dtype=np.int64)
            if not len(js):
                continue
            js = js[np.lexsort((jobs.deadline_s[js], -jobs.priority[js]))]
            cand = np.append(nb[s], s)
            finish = self.predicted_finish(js, now_s, s, cand)
            best = np.argmin(finish, axis=1)
            taken: set[int] = set()
            for row, j in enumerate(js.tolist()):
                dst = int(cand[best[row]])
                if dst == s or dst in taken or finish[row, best[row]] > jobs.deadline_s[j]:
                    continue
                taken.add(dst)
                sim.offloads[j] += 1
                sim.send(j, s, dst, now_s)


POLICIES = {
    "round-robin": RoundRobinPolicy,
    "least-queue": LeastQueuePolicy,
    "priority": PriorityPolicy,
    "marginal-cost": MarginalCostPolicy,
    "orbitd": OrbitdPolicy,
}
"""Policy classes by name (each constructed with its default parameters)."""


def make_policy(name: str) -> _Policy:
    """A fresh policy by name (see POLICIES); raises KeyError with the known names."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise KeyError(f"unknown fleet policy {name!r} (known: {', '.join(POLICIES)})") from None
    policy: _Policy = cls()
    return policy
