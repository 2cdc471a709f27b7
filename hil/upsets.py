"""Upsets for the software-in-the-loop run: the plant's upset rate turned into bit flips in flightd.

``hil sil --radiation`` runs flightd with its TEST-ONLY fault injection on (``radiation.
test_fault_injection``) and the workload's model held and scrubbed. :class:`UpsetInjector` follows the
plant's ``radiation`` channel and flightd's ``soft_errors`` and ``compute`` channels; for each
radiation sample it draws the upsets due since the previous one (Poisson, :class:`UpsetModel`) and
sends them as ``inject_fault`` commands:

- **weights**: ``upset_rate_per_mbit_day`` x the weight bits flightd holds (``soft_errors.weight_bytes``,
  every replica) x the simulated time, single-bit upsets at random places of a random held replica;
- **runs**: the same rate x ``run_mbit`` (the memory a run's activations and outputs occupy while it
  computes, an assumption: tile-fp32's intermediate tensors at batch 4 are of this order) x the share
  of the time flightd computes (``compute.busy_cores`` over the board's cores); each one armed for the
  next run, half in its input copy, half in its outputs.

``scale`` accelerates the rate for the weights (as a beam test does): at the physical rate a SIL run of
two orbits would see a handful of upsets (nominal orbit: 0.19 per Mbit-day on average, 4 in the SAA's
core). Runs get their own, lower ``run_scale``: the warp already stretches a run's exposure (a 0.1 s
run at warp 200 spans 20 s of orbit), and a rate that hit every run would fail every DMR job, a regime
no orbit reaches; the defaults hit a run now and then outside the SAA and one in a few inside it. The
report states both. Counts of what was injected come from flightd's replies; what flightd detected and
corrected comes from its ``soft_errors`` counters (hil.sil's report).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ground.client import GroundClient, GroundError
from link.messages import FaultTarget, InjectFault, Telemetry
from link.telemetry import BUSY_CORES, COMPUTE, RADIATION, SOFT_ERRORS, UPSET_RATE, WEIGHT_BYTES

log = logging.getLogger("hil.upsets")

MBIT = 1.0e6
DAY_S = 86400.0
RUN_MBIT = 64.0
"""Default memory of one run exposed to upsets while it computes, Mbit (8 MB; see the module docstring)."""
SCALE, RUN_SCALE = 10.0, 3.0
"""Default accelerations of the upset rate for held weights and for runs (see the module docstring)."""


@dataclass
class UpsetModel:
    """Poisson draws of upsets (pure but for its random generator)."""

    scale: float = SCALE
    run_scale: float = RUN_SCALE
    run_mbit: float = RUN_MBIT
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        if min(self.scale, self.run_scale, self.run_mbit) < 0:
            raise ValueError("upset scales and run memory must not be negative")
        self.rng = np.random.default_rng(self.seed)

    @staticmethod
    def expected(rate_per_mbit_day: float, mbit: float, dt_s: float, scale: float) -> float:
        """Upsets expected in ``mbit`` over ``dt_s`` simulated seconds at the rate, times ``scale``."""
        return max(0.0, rate_per_mbit_day) * mbit * max(0.0, dt_s) / DAY_S * scale

    def draw(self, expected: float) -> int:
        """A Poisson draw of ``expected`` upsets."""
        return int(self.rng.poisson(expected))


@dataclass
class UpsetInjector:
    """Sends the upsets due to flightd (see the module docstring); ``cores``: the board's cores."""

    ground: GroundClient
    model: UpsetModel
    cores: int
    weight_bits: int = 0
    run_faults: int = 0
    refused: int = 0
    expected_weight: float = 0.0
    expected_run: float = 0.0
    _last_t: float | None = None
    _weight_bytes: float = 0.0
    _busy: float = 0.0

    async def run(self) -> None:
        async for sample in self.ground.watch_messages(self.ground.topics.telemetry_all, Telemetry):
            if sample.channel == SOFT_ERRORS:
                self._weight_bytes = sample.values.get(WEIGHT_BYTES, self._weight_bytes)
            elif sample.channel == COMPUTE:
                self._busy = min(1.0, sample.values.get(BUSY_CORES, 0.0) / max(1, self.cores))
            elif sample.channel == RADIATION and UPSET_RATE in sample.values:
                await self._due(sample.t_s, sample.values[UPSET_RATE])

    async def _due(self, t_s: float, rate: float) -> None:
        last, self._last_t = self._last_t, t_s
        if last is None or t_s <= last:
            return
        dt = t_s - last
        m = self.model
        expected_weight = m.expected(rate, self._weight_bytes * 8 / MBIT, dt, m.scale)
        expected_run = m.expected(rate, m.run_mbit * self._busy, dt, m.run_scale)
        self.expected_weight += expected_weight
        self.expected_run += expected_run
        weights, runs = m.draw(expected_weight), m.draw(expected_run)
        if weights:
            reply = await self._send(InjectFault(target=FaultTarget.WEIGHTS, count=weights))
            if reply is not None:
                self.weight_bits += sum(len(f["bits"]) for f in reply.get("flips", []))
        if runs:
            inputs = int(self.model.rng.binomial(runs, 0.5))
            for place, n in ((FaultTarget.RUN_INPUT, inputs), (FaultTarget.RUN_OUTPUT, runs - inputs)):
                if n and await self._send(InjectFault(target=place, count=n)) is not None:
                    self.run_faults += n

    async def _send(self, command: InjectFault) -> dict[str, Any] | None:
        try:
            reply = await self.ground.command(command, timeout_s=5.0)
        except GroundError as exc:  # e.g. no weights held yet (the first job not run): counted, not fatal
            self.refused += 1
            log.debug("upset not injected: %s", exc)
            return None
        return reply if isinstance(reply, dict) else {}

