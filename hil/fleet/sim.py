"""The fleet simulator: N satellites, one job stream, one dispatch policy, stepped together.

``scenario = build_fleet_scenario(constellation, ...)`` precomputes what every policy shares (the
illumination of every satellite on the step grid, the job stream and each job's entry satellite);
``FleetSim(scenario, policy).run()`` -> :class:`FleetResult`. Pure: no clock, no I/O, seeded.

Per step [t, t + dt):
1. jobs that have arrived are routed by the policy's ground dispatcher (``route``); a job sent to a
   satellite other than its entry one travels ``hops`` ISL hops (:class:`IslLink`: latency + size /
   rate per hop, store and forward) and joins the target's queue when it arrives;
2. every satellite's telemetry (power, thermal and orbit channels, as the plant would publish them)
   goes to the policy, which returns the busy cores each satellite allows (``allowed``), and may move
   queued jobs between ISL neighbours (``rebalance``);
3. each executor runs its job at the allowed cores (a job's work is its true core-seconds; one job at
   a time; a paused job keeps its progress); when it finishes, the policy's onboard scheduler
   (``pick``) chooses the next one, which starts in the same step with the capacity left;
4. the plant (:class:`hil.fleet.plant.FleetPlant`) steps with the busy cores actually used.

Scores (all policies, same definitions as hil/governor_sim.py's): ``goodput`` = sum of the value of
jobs finished by their deadline; ``deadline_misses`` = jobs whose deadline fell inside the run and that
did not finish by it (expired in a queue, rejected, shed, late, or still running); ``violation_s`` =
satellite-seconds with any limit broken (hil/scoring.py's ``scored_limits``: the governor's limits'
watchpoints and ``brownout``, evaluated on every satellite each step); ``mean_battery_reserve`` =
mean over satellites and steps of (SoC - floor).
Queued jobs whose deadline has passed leave the queue (every policy); a running job runs to the end.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from flight.governor.config import GovernorConfig
from flight.governor.limits import Limits
from hil.fleet.constellation import Constellation, IslLink
from hil.fleet.governor import FleetTelemetry, failing
from hil.fleet.illumination import FleetIllumination, illuminate
from hil.fleet.plant import FleetPlant
from hil.fleet.workload import LAND_DEMAND, DemandRegion, FleetJobs, make_fleet_workload
from hil.governor_sim import WorkloadSpec, governor_config_for
from hil.plant.plant import PlantConfig
from hil.plant.shadow import eclipse_fraction_cylindrical
from hil.scenario import load_scenario
from hil.scoring import scored_limits
from link.telemetry import BATTERY_V, BOARD_C, RADIATOR_C, SOC, UNSERVED_W

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PENDING, TRANSIT, QUEUED, RUNNING, DONE, LATE, DROPPED = range(7)
"""Job states in a run."""


@dataclass(frozen=True)
class FleetScenario:
    """What every policy's run shares. ``entry`` (jobs,): each job's entry satellite;
    ``eclipse_fraction`` (steps, N): cylindrical eclipse fraction at each satellite's beta;
    ``last_exit0_s`` (N,): each satellite's last eclipse exit before ``t0_s``."""

    constellation: Constellation
    plant: PlantConfig
    limits: Limits
    governor: GovernorConfig
    jobs: FleetJobs
    entry: IntArray
    illumination: FleetIllumination
    eclipse_fraction: FloatArray
    last_exit0_s: FloatArray
    isl: IslLink
    t0_s: float
    dt_s: float
    steps: int

    @property
    def n(self) -> int:
        return self.constellation.n

    @property
    def duration_s(self) -> float:
        return self.steps * self.dt_s


def build_fleet_scenario(
    constellation: Constellation,
    plant_scenario: str = "nominal-550km",
    hours: float = 24.0,
    dt_s: float = 30.0,
    spec: WorkloadSpec | None = None,
    regions: Sequence[DemandRegion] = LAND_DEMAND,
    seed: int = 1,
    isl: IslLink | None = None,
    substeps: int = 6,
) -> FleetScenario:
    """A fleet scenario: every satellite gets the plant and limits of ``plant_scenario`` (hil/scenarios;
    its orbit is replaced by the constellation's), the workload ``spec`` (per satellite) located by
    ``regions``, and the governor configured from the design as hil/governor_sim.py does."""
    sc = load_scenario(plant_scenario)
    cfg = sc.config
    lim = sc.limits
    steps = round(hours * 3600.0 / dt_s)
    ill = illuminate(constellation, 0.0, steps, dt_s, cfg.solar_constant_w_m2, substeps)
    # the orbit before t = 0, for each satellite's last eclipse exit
    pre_steps = math.ceil(float(constellation.period_s.max()) / dt_s) + 1
    pre = illuminate(constellation, -pre_steps * dt_s, pre_steps, dt_s, cfg.solar_constant_w_m2, substeps)
    lit = pre.sunlit
    last_exit = np.full(constellation.n, -float(constellation.period_s.max()))
    for k in range(1, pre_steps):
        turned = lit[k] & ~lit[k - 1]
        last_exit[turned] = -pre_steps * dt_s + k * dt_s
    ecl_of = np.vectorize(eclipse_fraction_cylindrical)
    hourly = max(1, round(3600.0 / dt_s))
    coarse = ecl_of(constellation.altitude_km[None, :], ill.beta_deg[::hourly])
    ecl = np.repeat(coarse, hourly, axis=0)[:steps]
    workload = make_fleet_workload(steps * dt_s, spec or WorkloadSpec(), constellation.n, regions, seed)
    entry, _ = constellation.nearest(workload.arrival_s, workload.lat_deg, workload.lon_deg)
    gov = governor_config_for(sc.build_plant(), lim, dt_s)
    return FleetScenario(constellation, cfg, lim, gov, workload, entry, ill, ecl, last_exit,
                         isl or IslLink(), 0.0, dt_s, steps)


class FleetPolicy(Protocol):
    """A dispatch policy: ground routing, per-satellite compute allowance, onboard scheduling and
    neighbour offload. ``bind`` is called once before the run."""

    name: str

    def bind(self, sim: FleetSim) -> None: ...

    def route(self, j: int, now_s: float) -> int: ...

    def allowed(self, now_s: float, tel: FleetTelemetry) -> FloatArray: ...

    def pick(self, s: int, now_s: float) -> int | None: ...

    def rebalance(self, now_s: float) -> None: ...


@dataclass
class FleetResult:
    """Scores of one run (see the module docstring) and a few fleet-level traces."""

    policy: str
    sats: int
    hours: float
    goodput: float = 0.0
    jobs_offered: int = 0
    jobs_done: int = 0
    jobs_late: int = 0
    deadline_misses: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    violation_s: float = 0.0
    violation_by_limit: dict[str, float] = field(default_factory=dict)
    mean_battery_reserve: float = 0.0
    min_soc: float = 1.0
    max_board_c: float = -math.inf
    max_radiator_c: float = -math.inf
    compute_wh: float = 0.0
    wasted_compute_wh: float = 0.0
    shunt_wh: float = 0.0
    transfers: int = 0
    transfer_hops: int = 0
    wall_s: float = 0.0
    trace_t_s: list[float] = field(default_factory=list)
    trace_mean_soc: list[float] = field(default_factory=list)
    trace_min_soc: list[float] = field(default_factory=list)
    trace_busy: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "goodput": round(self.goodput, 1),
            "deadline_misses": self.deadline_misses,
            "mean_battery_reserve": round(self.mean_battery_reserve, 4),
            "violation_s": round(self.violation_s, 1),
            "violation_by_limit": {k: round(v, 1) for k, v in self.violation_by_limit.items() if v > 0},
            "jobs_offered": self.jobs_offered,
            "jobs_done": self.jobs_done,
            "jobs_late": self.jobs_late,
            "dropped": self.dropped,
            "min_soc": round(self.min_soc, 4),
            "max_board_c": round(self.max_board_c, 2),
            "max_radiator_c": round(self.max_radiator_c, 2),
            "compute_wh": round(self.compute_wh, 1),
            "wasted_compute_wh": round(self.wasted_compute_wh, 1),
            "shunt_wh": round(self.shunt_wh, 1),
            "transfers": self.transfers,
            "mean_hops": round(self.transfer_hops / self.transfers, 2) if self.transfers else 0.0,
            "wall_s": round(self.wall_s, 2),
        }


class FleetSim:
    """One run of ``policy`` on ``scenario`` (see the module docstring). Policies use the queue
    operations (``enqueue``, ``send``, ``peek``, ``take``, ``top``, ``drop``) and read the state arrays
    (``run_job``, ``remaining``, ``committed``, ``queue_len``, ``telemetry``). ``committed[s, p]`` is
    the work (core-s) queued at or travelling to satellite s with priority >= p, so ``committed[:, 0]``
    is each satellite's whole backlog."""

    def __init__(self, scenario: FleetScenario, policy: FleetPolicy, trace_every_s: float = 600.0) -> None:
        self.sc = scenario
        self.policy = policy
        n, jobs = scenario.n, scenario.jobs
        self.n = n
        self.plant = FleetPlant(scenario.plant, n)
        self.board = scenario.plant.board
        self.cores = float(self.board.cores)
        m = len(jobs)
        self.status = np.zeros(m, dtype=np.int8)
        self.where = np.full(m, -1, dtype=np.int64)
        self.version = np.zeros(m, dtype=np.int64)
        self.offloads = np.zeros(m, dtype=np.int64)
        self.finish_s = np.full(m, math.nan)
        self.drop_reason: dict[int, str] = {}
        self.heaps: list[list[tuple[int, float, float, int, int]]] = [[] for _ in range(n)]
        self.queue_len = np.zeros(n, dtype=np.int64)
        self.committed = np.zeros((n, 10))  # queued + in-transit core-s of priority >= p
        self.run_job = np.full(n, -1, dtype=np.int64)
        self.remaining = np.zeros(n)
        self.retry_at = np.full(n, -math.inf)
        self.transit: list[tuple[float, int, int]] = []
        self.expiry: list[tuple[float, int, int]] = []  # (deadline, job, version) of queued jobs
        self.sunlit = scenario.illumination.sunlit
        self.last_exit = scenario.last_exit0_s.copy()
        self.prev_sunlit = self.sunlit[0].copy()
        self.now_s = scenario.t0_s
        self.telemetry = self._telemetry(0, scenario.t0_s)
        self.trace_every = max(1, round(trace_every_s / scenario.dt_s))
        self.result = FleetResult(policy.name, n, scenario.duration_s / 3600.0, jobs_offered=m)

    # ------------------------------------------------------------------------------ queues

    def enqueue(self, j: int, s: int) -> None:
        """Put job ``j`` in satellite ``s``'s queue (its committed work is already counted at ``s``)."""
        jobs = self.sc.jobs
        self.version[j] += 1
        self.status[j] = QUEUED
        self.where[j] = s
        v, dl = int(self.version[j]), float(jobs.deadline_s[j])
        heapq.heappush(self.heaps[s], (-int(jobs.priority[j]), dl, float(jobs.arrival_s[j]), j, v))
        if dl < math.inf:
            heapq.heappush(self.expiry, (dl, j, v))
        self.queue_len[s] += 1
        self.retry_at[s] = -math.inf

    def _uncommit(self, j: int, s: int) -> None:
        self.committed[s, :self.sc.jobs.priority[j] + 1] -= self.sc.jobs.core_s[j]

    def _dequeue(self, j: int) -> int:
        """Take job ``j`` out of its queue (its heap entry goes stale); returns the satellite."""
        s = int(self.where[j])
        self.version[j] += 1
        self.queue_len[s] -= 1
        self._uncommit(j, s)
        heap = self.heaps[s]
        if len(heap) > 2 * self.queue_len[s] + 64:  # too many stale entries: compact
            self.heaps[s] = [e for e in heap if self._live(s, e)]
            heapq.heapify(self.heaps[s])
        return s

    def send(self, j: int, src: int, dst: int, now_s: float, queued: bool = True) -> None:
        """Move job ``j`` from satellite ``src`` (its queue if ``queued``) over the ISL to ``dst``."""
        if queued:
            self._dequeue(j)
        jobs = self.sc.jobs
        self.committed[dst, :jobs.priority[j] + 1] += jobs.core_s[j]
        hops = int(self.sc.constellation.hops[src, dst])
        if hops == 0:
            self.enqueue(j, dst)
            return
        self.status[j] = TRANSIT
        self.where[j] = dst
        self.version[j] += 1
        self.result.transfers += 1
        self.result.transfer_hops += hops
        ready = now_s + float(self.sc.isl.transfer_s(hops, float(jobs.input_bytes[j])))
        heapq.heappush(self.transit, (ready, j, dst))

    def _live(self, s: int, entry: tuple[int, float, float, int, int]) -> bool:
        j = entry[3]
        return bool(self.status[j] == QUEUED and self.where[j] == s and self.version[j] == entry[4])

    def peek(self, s: int, now_s: float) -> int | None:
        """The first live job in ``s``'s queue in priority/EDF order (expired ones are dropped)."""
        heap = self.heaps[s]
        while heap:
            e = heap[0]
            if not self._live(s, e):
                heapq.heappop(heap)
                continue
            if e[1] <= now_s:
                heapq.heappop(heap)
                self.drop(e[3], "expired")
                continue
            return e[3]
        return None

    def take(self, j: int) -> None:
        """Remove job ``j`` from its queue (to start it)."""
        self._dequeue(j)

    def top(self, s: int, now_s: float, k: int) -> list[int]:
        """Up to ``k`` live, unexpired jobs of ``s``'s queue in priority/EDF order (popped and pushed
        back: O(k log n); stale and expired entries are discarded on the way)."""
        heap = self.heaps[s]
        live: list[tuple[int, float, float, int, int]] = []
        while heap and len(live) < k:
            e = heapq.heappop(heap)
            if not self._live(s, e):
                continue
            if e[1] <= now_s:
                self.drop(e[3], "expired")
                continue
            live.append(e)
        for e in live:
            heapq.heappush(heap, e)
        return [e[3] for e in live]

    def drop(self, j: int, reason: str) -> None:
        """Job ``j`` leaves its queue for good (expired, rejected, shed)."""
        if self.status[j] == QUEUED:
            self._dequeue(j)
        self.status[j] = DROPPED
        self.drop_reason[j] = reason

    def _expire(self, now_s: float) -> None:
        """Drop every queued job whose deadline has passed (keeps the committed work true)."""
        exp = self.expiry
        while exp and exp[0][0] <= now_s:
            _, j, v = heapq.heappop(exp)
            if self.status[j] == QUEUED and self.version[j] == v:
                self.drop(j, "expired")

    # ------------------------------------------------------------------------------ telemetry

    def _telemetry(self, k: int, t_s: float) -> FleetTelemetry:
        st = self.plant.state
        sc = self.sc
        return FleetTelemetry(
            t_s=t_s, soc=st.soc, battery_v=st.battery_v, battery_wh=st.battery_wh, solar_w=st.solar_w,
            bus_w=st.bus_w, compute_w=st.compute_w, sunlit=self.prev_sunlit, board_c=st.board_c,
            radiator_c=st.radiator_c, period_s=sc.constellation.period_s,
            eclipse_fraction=sc.eclipse_fraction[min(k, sc.steps - 1)], t_orbit_s=t_s - self.last_exit)

    # ------------------------------------------------------------------------------ execution

    def _start(self, s: int, j: int) -> None:
        self.status[j] = RUNNING
        self.where[j] = s
        self.run_job[s] = j
        self.remaining[s] = self.sc.jobs.core_s[j]

    def _complete(self, s: int, t_s: float) -> None:
        j = int(self.run_job[s])
        self.run_job[s] = -1
        self.remaining[s] = 0.0
        self.finish_s[j] = t_s
        jobs = self.sc.jobs
        on_time = t_s <= jobs.deadline_s[j]
        self.status[j] = DONE if on_time else LATE
        if on_time:
            self.result.goodput += float(jobs.value[j])
        else:
            self.result.wasted_compute_wh += float(jobs.core_s[j]) * self.board.w_per_core / 3600.0

    def _pick_and_start(self, s: int, now_s: float) -> bool:
        if self.queue_len[s] <= 0 or now_s < self.retry_at[s]:
            return False
        j = self.policy.pick(s, now_s)
        if j is None:
            self.retry_at[s] = now_s + getattr(self.policy, "retry_s", 0.0)
            return False
        self._start(s, j)
        return True

    def _execute(self, t_s: float, allowed: FloatArray) -> FloatArray:
        """Run every executor for one step at ``allowed`` busy cores; returns the core-s used."""
        dt = self.sc.dt_s
        cap = allowed * dt
        has_cap = cap > 1e-12
        for s in np.nonzero((self.run_job < 0) & has_cap & (self.queue_len > 0))[0].tolist():
            self._pick_and_start(s, t_s)
        running = self.run_job >= 0
        used = np.where(running, np.minimum(self.remaining, cap), 0.0)
        self.remaining -= used
        for s in np.nonzero(running & has_cap & (self.remaining <= 1e-9))[0].tolist():
            rate = float(allowed[s])
            self._complete(s, t_s + float(used[s]) / rate)
            left = float(cap[s] - used[s])
            while left > 1e-9 and self._pick_and_start(s, t_s + float(used[s]) / rate):
                u = min(float(self.remaining[s]), left)
                self.remaining[s] -= u
                used[s] += u
                left -= u
                if self.remaining[s] <= 1e-9:
                    self._complete(s, t_s + float(used[s]) / rate)
        return used

    # ------------------------------------------------------------------------------ run

    def run(self) -> FleetResult:
        sc, res, pol = self.sc, self.result, self.policy
        t_wall = time.perf_counter()
        pol.bind(self)
        jobs = sc.jobs
        order = np.argsort(jobs.arrival_s, kind="stable")
        arrivals = jobs.arrival_s[order]
        ai, m = 0, len(jobs)
        dt = sc.dt_s
        ill = sc.illumination
        lim = sc.limits
        board = self.board
        reserve_sum = 0.0
        scored = scored_limits(lim)  # hil/scoring.py's limits, evaluated on arrays of satellites
        viol = {limit.name: 0.0 for limit in scored}
        for k in range(sc.steps):
            t = sc.t0_s + k * dt
            self.now_s = t
            while ai < m and arrivals[ai] <= t:
                j = int(order[ai])
                ai += 1
                dst = pol.route(j, t)
                self.send(j, int(sc.entry[j]), dst, float(jobs.arrival_s[j]), queued=False)
            while self.transit and self.transit[0][0] <= t:
                _, j, dst = heapq.heappop(self.transit)
                self.enqueue(j, dst)
            self._expire(t)
            self.telemetry = tel = self._telemetry(k, t)
            allowed = np.clip(pol.allowed(t, tel), 0.0, self.cores)
            pol.rebalance(t)
            used = self._execute(t, allowed)
            busy = used / dt
            st = self.plant.step(dt, ill.fraction[k], ill.sun_w_m2[k], ill.zenith_sun_w_m2[k],
                                 board.idle_w + board.w_per_core * busy)
            lit = self.sunlit[k]
            self.last_exit = np.where(lit & ~self.prev_sunlit, t, self.last_exit)
            self.prev_sunlit = lit
            values = {SOC: st.soc, BATTERY_V: st.battery_v, BOARD_C: st.board_c, RADIATOR_C: st.radiator_c,
                      UNSERVED_W: st.unserved_w}
            any_broken = np.zeros(self.n, dtype=bool)
            for limit in scored:
                broken = failing(limit, values[limit.key])
                viol[limit.name] += dt * float(np.count_nonzero(broken))
                any_broken |= broken
            res.violation_s += dt * float(np.count_nonzero(any_broken))
            reserve_sum += float(np.mean(st.soc)) - lim.soc_floor
            res.min_soc = min(res.min_soc, float(st.soc.min()))
            res.max_board_c = max(res.max_board_c, float(st.board_c.max()))
            res.max_radiator_c = max(res.max_radiator_c, float(st.radiator_c.max()))
            res.compute_wh += float(np.sum(st.compute_w)) * dt / 3600.0
            res.shunt_wh += float(np.sum(st.shunt_w)) * dt / 3600.0
            if k % self.trace_every == 0:
                res.trace_t_s.append(t + dt)
                res.trace_mean_soc.append(float(st.soc.mean()))
                res.trace_min_soc.append(float(st.soc.min()))
                res.trace_busy.append(float(busy.mean()))
        t_end = sc.t0_s + sc.steps * dt
        res.violation_by_limit = viol
        res.mean_battery_reserve = reserve_sum / sc.steps
        done = self.status == DONE
        res.jobs_done = int(np.count_nonzero(done))
        res.jobs_late = int(np.count_nonzero(self.status == LATE))
        res.deadline_misses = int(np.count_nonzero(~done & (jobs.deadline_s <= t_end)))
        for reason in self.drop_reason.values():
            res.dropped[reason] = res.dropped.get(reason, 0) + 1
        res.wall_s = time.perf_counter() - t_wall
        return res
