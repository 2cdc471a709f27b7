"""The link's clock: mission seconds, possibly running faster than the wall clock (warp).

Everything the link emulator models (contact windows, delay, rate, loss bursts, TCP backoff on the
space segment) happens in mission time, so a warped run keeps the plan's proportions: a 10 min pass at
warp 60 lasts 10 s of wall time and carries as many bytes as the real pass. What runs on the endpoints
(Mosquitto's keepalive and bridge restart timers, the kernel's TCP between an endpoint and the relay)
runs in wall time and is not warped: see docs/hil.md.

:class:`WarpClock` is a fixed law (a relay on its own); :class:`ToneClock` follows a plant simulator's
time tones (``hil sil --link``: the link runs on the plant's time, as flightd's mission clock does).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
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


class ToneClock:
    """Mission time as a plant simulator's time tones tell it (``tlm/clock``: ``t_s`` and ``rate``, see
    docs/sil.md): the link follows the plant, whatever its warp, its pace slips or its lock-step holds.

    Between tones the clock runs on at the latest tone's rate for at most ``lead_s`` simulated seconds
    past that tone (one tone period is enough: the plant's next tone is due then), so a plant that is
    held or has stopped holds the link with it, at most ``lead_s`` ahead. Before the first tone it reads
    ``t0_s``. It never runs backwards. ``tone`` is fed by whoever receives the tones (the rig's
    subscription); ``monotonic`` is the wall clock (injectable for tests).

    Raises ValueError for ``lead_s`` < 0.
    """

    def __init__(self, lead_s: float, t0_s: float = 0.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if lead_s < 0:
            raise ValueError(f"lead {lead_s} s must be >= 0")
        self.lead_s = lead_s
        self.monotonic = monotonic
        self._t_s = t0_s
        self._wall_s: float | None = None
        self._rate = 1.0
        self._last = t0_s
        self._tick: asyncio.Event | None = None
        self.tones = 0

    def tone(self, t_s: float, rate: float | None = None) -> None:
        """A tone: mission time ``t_s`` now, running at ``rate`` simulated s per wall s (kept when
        missing or not a positive number). An out-of-order tone (older than the latest) is ignored."""
        if not math.isfinite(t_s) or t_s < self._t_s:
            return
        self._t_s, self._wall_s = t_s, self.monotonic()
        if rate is not None and math.isfinite(rate) and rate > 0:
            self._rate = rate
        self.tones += 1
        if self._tick is not None:
            self._tick.set()

    @property
    def rate(self) -> float:
        """Simulated seconds per wall second, as the latest tone declared (1 before any)."""
        return self._rate

    def now(self) -> float:
        if self._wall_s is not None:
            run_on = min(self._rate * (self.monotonic() - self._wall_s), self.lead_s)
            self._last = max(self._last, self._t_s + run_on)
        return self._last

    async def sleep_until(self, t_s: float) -> None:
        if self._tick is None:
            self._tick = asyncio.Event()
        while (now := self.now()) < t_s:
            self._tick.clear()
            wait = max((t_s - now) / self._rate, 0.001)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._tick.wait(), wait)
