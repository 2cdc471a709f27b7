"""flight.rate_group.RateGroup: cycle count, slip and overrun accounting (fake clock, hand-computed),
no bunching after a slow cycle (real clock), and a failing cycle does not stop the group."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from flight.rate_group import RateGroup
from tests.support import ManualClock


async def run_until(group: RateGroup, done: asyncio.Event, timeout_s: float = 5.0) -> None:
    task = asyncio.create_task(group.run())
    try:
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_slip_overrun_and_cycle_time_with_a_fake_clock() -> None:
    """Period 10 ms (fake); the cycles take 2, 15, 35, 1, 1 ms of fake time. By hand:
    c0 starts at 0 (due 0); c1 at 2 (due 10): no slip; c2 at 17 (due 20): none; c3 at 52 (due 30):
    slip 22 > 10 -> overrun, due := 52; c4 at 53 (due 62): none."""
    clock = ManualClock()
    durations = [0.002, 0.015, 0.035, 0.001, 0.001]
    slips: list[float] = []
    done = asyncio.Event()

    async def cycle() -> None:
        k = group.health.cycles
        slips.append(group.health.last_slip_s)
        clock.t += durations[k]
        if k == len(durations) - 1:
            done.set()
            await asyncio.sleep(3600)  # park inside the last cycle until cancelled

    group = RateGroup("test", 0.010, cycle, clock=clock)
    await run_until(group, done)
    assert slips == pytest.approx([0.0, 0.0, 0.0, 0.022, 0.0])
    h = group.health
    assert h.cycles == 4  # the fifth is still in progress
    assert h.overruns == 1
    assert h.max_slip_s == pytest.approx(0.022)
    assert h.max_cycle_s == pytest.approx(0.035)
    assert h.last_cycle_s == pytest.approx(0.001)


async def test_exceptions_do_not_stop_the_group() -> None:
    done = asyncio.Event()
    calls = 0

    async def cycle() -> None:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            raise RuntimeError("sensor glitch")
        if calls >= 7:
            done.set()

    group = RateGroup("flaky", 0.002, cycle)
    await run_until(group, done)
    assert calls >= 7 and group.health.cycles >= 6


async def test_a_slow_cycle_is_an_overrun_and_missed_ticks_are_not_bunched() -> None:
    period = 0.02
    starts: list[float] = []
    done = asyncio.Event()

    async def cycle() -> None:
        starts.append(time.monotonic())
        if len(starts) == 3:
            time.sleep(0.12)  # blocks the loop: six ticks missed
        if len(starts) == 10:
            done.set()

    group = RateGroup("slow", period, cycle)
    await run_until(group, done)
    assert group.health.overruns >= 1
    assert group.health.max_slip_s >= 0.12 - period - 0.005
    assert group.health.max_cycle_s >= 0.12
    gaps = [b - a for a, b in itertools.pairwise(starts[2:])]
    # after the slow cycle the group is back on its period: not six back-to-back catch-up cycles
    assert sum(1 for g in gaps if g < period / 2) <= 1, gaps


def test_period_must_be_positive() -> None:
    async def cycle() -> None:
        return None

    with pytest.raises(ValueError, match="period_s must be > 0"):
        RateGroup("bad", 0.0, cycle)
