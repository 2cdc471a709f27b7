"""A periodic cycle that times itself, in the manner of F Prime's Svc/ActiveRateGroup.

``RateGroup.run()`` calls ``cycle()`` every ``period_s`` of the given monotonic clock. It records
slip (how late each cycle started, s), cycle execution time (s) and overruns (a cycle that started
more than one period late; missed ticks are skipped, never bunched up). ``health()`` is what flightd
answers to a ping and puts in its status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("flightd.rate_group")


@dataclass
class RateGroupHealth:
    cycles: int = 0
    overruns: int = 0
    last_slip_s: float = 0.0
    max_slip_s: float = 0.0
    last_cycle_s: float = 0.0
    max_cycle_s: float = 0.0


class RateGroup:
    """Runs ``cycle`` every ``period_s``; exceptions in a cycle are logged and the group carries on."""

    def __init__(
        self,
        name: str,
        period_s: float,
        cycle: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be > 0")
        self.name = name
        self.period_s = period_s
        self._cycle = cycle
        self._clock = clock
        self.health = RateGroupHealth()

    async def run(self) -> None:
        due = self._clock()
        while True:
            start = self._clock()
            slip = max(0.0, start - due)
            h = self.health
            h.last_slip_s, h.max_slip_s = slip, max(h.max_slip_s, slip)
            if slip > self.period_s:
                h.overruns += 1
                log.warning("%s: cycle %d started %.1f ms late", self.name, h.cycles, slip * 1e3)
                due = start
            try:
                await self._cycle()
            except Exception:
                log.exception("%s: cycle %d failed", self.name, h.cycles)
            h.cycles += 1
            h.last_cycle_s = self._clock() - start
            h.max_cycle_s = max(h.max_cycle_s, h.last_cycle_s)
            due += self.period_s
            await asyncio.sleep(max(0.0, due - self._clock()))
