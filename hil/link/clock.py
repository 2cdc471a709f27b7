"""The link's clock: mission seconds, possibly running faster than the wall clock (warp).

Everything the link emulator models (contact windows, delay, rate, loss bursts, TCP backoff on the
space segment) happens in mission time, so a warped run keeps the plan's proportions: a 10 min pass at
warp 60 lasts 10 s of wall time and carries as many bytes as the real pass. What runs on the endpoints
(Mosquitto's keepalive and bridge restart timers, the kernel's TCP between an endpoint and the relay)
runs in wall time and is not warped: see docs/hil.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class LinkClock(Protocol):
    """Mission time for the link emulator."""

    def now(self) -> float:
        """Mission time now, s."""
        ...

    async def sleep_until(self, t_s: float) -> None:
        """Return once mission time has reached ``t_s`` (at once if it has)."""
        ...


class WarpClock:
    """t = t0_s + warp * (time.monotonic() - wall0): the law :func:`hil.plant_service.serve` steps the
    plant by, so a plant and a relay given the same ``wall0``, ``t0_s`` and ``warp`` agree.

    Raises ValueError for warp <= 0.
    """

    def __init__(self, warp: float = 1.0, t0_s: float = 0.0, wall0: float | None = None) -> None:
        if warp <= 0:
            raise ValueError(f"warp {warp} must be > 0")
        self.warp = warp
        self.t0_s = t0_s
        self.wall0 = time.monotonic() if wall0 is None else wall0

    def now(self) -> float:
        return self.t0_s + self.warp * (time.monotonic() - self.wall0)

    def wall_at(self, t_s: float) -> float:
        """The ``time.monotonic()`` reading at which mission time reaches ``t_s``."""
        return self.wall0 + (t_s - self.t0_s) / self.warp

    async def sleep_until(self, t_s: float) -> None:
        while (delay := self.wall_at(t_s) - time.monotonic()) > 0:
            await asyncio.sleep(delay)
