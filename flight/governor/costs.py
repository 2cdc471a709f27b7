"""Per-model job cost (time s, core-seconds, energy J) learned from measured runs.

Costs are per *unit* of work (one inference of batch 1; a job of batch ``n`` has ``units=n``) and are
exponential moving averages of measurements, seeded with the bundled tile model's measured cost:
INT8 static-QDQ 7-conv CNN, 3x128x128, 496 inf/s at 2 intra-op threads, batch 1, on the 2-vCPU
development machine (/work/shared/reference/boards-and-runtime.md, "Measured on the development
machine"). So one tile costs 1/496 s of wall time at 2 threads = 2/496 core-seconds, and
``core_s * w_per_core`` joules above the board's idle power.

Redundant execution (docs/radiation.md) multiplies a job's work: :func:`checked_units` counts a job run
under ``dmr`` as two units per unit and under ``tmr`` as three (the third run a DMR mismatch adds is
rare and not foreseen). Measured runs are folded in per run, so a model's cost stays that of one
inference whatever modes its jobs ran under.

An estimate is only refreshed by the runs a satellite gets, and a fleet dispatcher routes by it
(``Status.outlook.job_core_s``), so a figure measured under a passing load can keep the jobs away that
would correct it. Two things break that loop: the measurement time of each estimate is kept
(:meth:`CostModel.age_s`, reported in ``Status.outlook.job_cost_age_s`` so the ground can tell a stale
figure, docs/fleet.md "Stale figures"), and a run measured after a long gap weighs more: the old
estimate's weight ``1 - alpha`` decays as ``exp(-gap_s / memory_s)`` (an exponentially time-weighted
average with ``alpha`` as its floor), so one probe job after minutes without runs replaces most of an
old figure instead of a fifth of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flight.radiation.redundancy import RUNS_FIRST
from link.messages import Redundancy

TILE_MODEL_INF_PER_S = 496.0
"""INT8 tile CNN inferences per second at 2 threads (boards-and-runtime.md)."""
TILE_MODEL_THREADS = 2


@dataclass(frozen=True)
class ModelCost:
    """Cost of one unit of work: ``time_s`` wall time at ``threads`` intra-op threads and duty 1,
    ``core_s`` busy core-seconds, ``energy_j`` energy above idle (J). All >= 0."""

    time_s: float
    core_s: float
    energy_j: float
    threads: int
    samples: int = 0
    at_s: float | None = None
    """When it was last measured (the caller's clock, s; None: never, or not said)."""

    def wall_time_s(self, units: float, threads: int, duty_cycle: float = 1.0) -> float:
        """Wall time (s) for ``units`` at ``threads`` and ``duty_cycle``, assuming work scales with
        busy cores (core_s / threads), the linear model the governor budgets with."""
        if duty_cycle <= 0.0 or threads < 1:
            return float("inf")
        return units * self.core_s / (threads * duty_cycle)


def checked_units(units: float, mode: Redundancy) -> float:
    """Work units of a job of ``units`` run under ``mode``: x1 none, x2 dmr, x3 tmr (time and energy)."""
    return units * RUNS_FIRST[mode]


def seed_cost(w_per_core: float) -> ModelCost:
    """The bundled tile model's measured cost, with energy from the board profile (W per busy core)."""
    time_s = 1.0 / TILE_MODEL_INF_PER_S
    core_s = time_s * TILE_MODEL_THREADS
    return ModelCost(time_s=time_s, core_s=core_s, energy_j=core_s * w_per_core, threads=TILE_MODEL_THREADS)


class CostModel:
    """EMA of measured per-unit costs per model name; unknown models get the seed cost.

    ``alpha``: weight of a new run; ``memory_s``: time constant (s, the clock of ``observe``'s
    ``at_s``) over which an estimate without new runs loses its weight (module docstring): 60 s, the
    scale on which a board's conditions change (another process's burst, a thermal clock step), so a
    figure a minute old counts for about a third of what it did."""

    def __init__(self, w_per_core: float, alpha: float = 0.2, seed: ModelCost | None = None,
                 memory_s: float = 60.0) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must lie in (0, 1]")
        if memory_s <= 0.0:
            raise ValueError("memory_s must be > 0")
        self.w_per_core = w_per_core
        self.alpha = alpha
        self.memory_s = memory_s
        self.seed = seed if seed is not None else seed_cost(w_per_core)
        self.models: dict[str, ModelCost] = {}

    def estimate(self, model: str) -> ModelCost:
        """Current per-unit cost of ``model`` (the seed until it has been measured)."""
        return self.models.get(model, self.seed)

    def age_s(self, model: str, now_s: float) -> float | None:
        """Seconds since ``model`` was last measured (``now_s`` on the clock of ``observe``'s ``at_s``);
        None while its estimate is the seed or was measured without a time."""
        cost = self.models.get(model)
        if cost is None or cost.at_s is None:
            return None
        return max(0.0, now_s - cost.at_s)

    def weight(self, old: ModelCost, at_s: float | None) -> float:
        """Weight of a new run measured at ``at_s`` against ``old``: ``alpha``, rising towards 1 as
        ``exp(-gap / memory_s)`` takes the old estimate's weight away (no time known: ``alpha``)."""
        if at_s is None or old.at_s is None:
            return self.alpha
        gap_s = max(0.0, at_s - old.at_s)
        return 1.0 - (1.0 - self.alpha) * math.exp(-gap_s / self.memory_s)

    def observe(
        self,
        model: str,
        wall_s: float,
        threads: int,
        units: float = 1.0,
        busy_core_s: float | None = None,
        energy_j: float | None = None,
        at_s: float | None = None,
    ) -> ModelCost:
        """Fold one measured run into the model's EMA and return the new estimate.

        ``wall_s``: run time of the job; ``busy_core_s``: measured busy core-seconds (default
        ``wall_s * threads``); ``energy_j``: measured energy above idle when a power sensor exists
        (default ``busy_core_s * w_per_core``, the board profile); ``at_s``: when the run ended (a
        monotonic clock, s; None: weight ``alpha`` and no age)."""
        if wall_s < 0 or units <= 0 or threads < 1:
            raise ValueError("need wall_s >= 0, units > 0, threads >= 1")
        core = busy_core_s if busy_core_s is not None else wall_s * threads
        energy = energy_j if energy_j is not None else core * self.w_per_core
        t_u, c_u, e_u = wall_s / units, core / units, energy / units
        old = self.models.get(model)
        if old is None:
            new = ModelCost(time_s=t_u, core_s=c_u, energy_j=e_u, threads=threads, samples=1, at_s=at_s)
        else:
            a = self.weight(old, at_s)
            new = ModelCost(
                time_s=(1 - a) * old.time_s + a * t_u,
                core_s=(1 - a) * old.core_s + a * c_u,
                energy_j=(1 - a) * old.energy_j + a * e_u,
                threads=threads,
                samples=old.samples + 1,
                at_s=at_s if at_s is not None else old.at_s,
            )
        self.models[model] = new
        return new
