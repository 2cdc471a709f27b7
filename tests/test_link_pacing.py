"""Time under ``hil sil --link``: the plant's warp follows a schedule (slow in contact, fast in the gaps),
its tones declare the warp, and the link's :class:`ToneClock` follows the tones."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time

import pytest

from hil.link.clock import ToneClock
from hil.mosquitto_broker import MosquittoBroker
from hil.plant_service import Pacer, WarpSchedule
from link.codec import decode
from link.messages import Telemetry
from link.telemetry import CLOCK, RATE
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client


def test_warp_schedule_around_windows() -> None:
    s = WarpSchedule.around([(1000.0, 1500.0), (3000.0, 3400.0), (3450.0, 3600.0)], 10.0, 200.0, lead_s=60.0)
    # the last two windows are 50 s apart, less than the lead: they merge
    assert s.spans == ((940.0, 1500.0, 10.0), (2940.0, 3600.0, 10.0))
    assert [s.warp_at(t) for t in (0.0, 939.9, 940.0, 1499.0, 1500.0, 2940.0, 3600.0)] == [
        200.0, 200.0, 10.0, 10.0, 200.0, 10.0, 200.0]
    assert s.next_change(0.0) == 940.0 and s.next_change(940.0) == 1500.0 and s.next_change(3600.0) == math.inf
    assert s.max_warp == 200.0
    assert WarpSchedule.from_json(s.to_json()) == s
    assert WarpSchedule(50.0).warp_at(1e9) == 50.0 and WarpSchedule(50.0).next_change(0.0) == math.inf
    relay = WarpSchedule.around([(0.0, math.inf)], 10.0, 200.0)  # relay mode: one endless contact
    assert relay.warp_at(0.0) == 10.0 and relay.warp_at(1e9) == 10.0


@pytest.mark.parametrize(
    "bad",
    [lambda: WarpSchedule(0.0), lambda: WarpSchedule(1.0, ((0.0, 10.0, -1.0),)),
     lambda: WarpSchedule(1.0, ((20.0, 30.0, 2.0), (0.0, 10.0, 2.0))), lambda: WarpSchedule(1.0, ((5.0, 5.0, 2.0),)),
     lambda: WarpSchedule.from_json('{"spans": []}'), lambda: WarpSchedule.from_json("[1")],
)
def test_warp_schedule_refuses_bad_input(bad: object) -> None:
    with pytest.raises(ValueError):
        bad()  # type: ignore[operator]


def test_pacer_rewarp_reanchors_without_a_slip() -> None:
    pacer = Pacer(warp=200.0, max_lag_s=40.0)
    assert pacer.target(0.0, 100.0) == 0.0
    assert pacer.target(0.0, 100.1) == pytest.approx(20.0)
    pacer.rewarp(10.0, 20.0, 100.1)
    assert pacer.target(20.0, 101.1) == pytest.approx(30.0)  # 10 simulated s in the next wall second
    assert pacer.wall_at(40.0) == pytest.approx(102.1)
    assert pacer.slips == 0
    with pytest.raises(ValueError):
        pacer.rewarp(0.0, 0.0, 0.0)


class FakeWall:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_tone_clock_runs_on_between_tones_but_never_past_the_lead() -> None:
    wall = FakeWall()
    clock = ToneClock(lead_s=10.0, t0_s=0.0, monotonic=wall)
    assert clock.now() == 0.0 and clock.rate == 1.0
    wall.t += 5.0
    assert clock.now() == 0.0  # no tone yet: the plant has not started
    clock.tone(100.0, rate=20.0)
    assert clock.now() == 100.0
    wall.t += 0.25
    assert clock.now() == pytest.approx(105.0)
    wall.t += 10.0  # the plant is held (lock-step) or stopped: the link stops 10 s past the tone
    assert clock.now() == pytest.approx(110.0)
    clock.tone(102.0, rate=20.0)  # out of order: ignored, and time never runs back
    assert clock.now() == pytest.approx(110.0)
    clock.tone(110.0, rate=0.0)  # a bad rate keeps the previous one
    assert clock.now() == pytest.approx(110.0) and clock.rate == 20.0
    wall.t += 0.1
    assert clock.now() == pytest.approx(112.0)
    clock.tone(float("nan"))
    assert clock.tones == 3
    with pytest.raises(ValueError):
        ToneClock(lead_s=-1.0)


async def test_tone_clock_sleep_wakes_with_the_tones() -> None:
    clock = ToneClock(lead_s=1.0)
    clock.tone(0.0, rate=100.0)
    t0 = time.monotonic()
    await clock.sleep_until(0.5)  # within the lead: 5 ms of wall time
    assert time.monotonic() - t0 < 0.5

    async def tones() -> None:
        for k in range(1, 6):
            await asyncio.sleep(0.02)
            clock.tone(float(k), rate=100.0)

    feeder = asyncio.create_task(tones())
    await asyncio.wait_for(clock.sleep_until(4.5), 5.0)  # past the lead of the first tone: needs tone 4
    assert clock.now() >= 4.5 and clock.tones >= 5
    await feeder


async def test_scheduled_plant_tones_declare_the_warp(mosquitto: MosquittoBroker) -> None:
    """``hil plant --warp-schedule``: 10 s of simulated time at warp 200, 20 s at warp 20, then 200
    again; the tones carry each warp and the wall time fits it."""
    topics = TopicMap("pace")
    schedule = WarpSchedule(200.0, ((10.0, 30.0, 20.0),))
    tones: list[tuple[float, float, float]] = []
    async with make_client(BrokerUrl.parse(mosquitto.url), identifier="pace-ground") as client:
        await client.subscribe(topics.telemetry(CLOCK), qos=0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "hil.cli", "plant", "--broker", mosquitto.url, "--sat", "pace", "--rate", "0.5",
             "--duration", "50", "--warp-schedule", schedule.to_json(), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(30):
                async for message in client.messages:
                    tone = decode(bytes(message.payload), Telemetry).message  # type: ignore[arg-type]
                    tones.append((time.monotonic(), tone.t_s, tone.values[RATE]))
                    if tone.t_s >= 50.0:
                        break
        finally:
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert '"pace_slips"' in out.decode()
    rates = {t_s: rate for _, t_s, rate in tones}
    assert {rates[t] for t in rates if t < 10.0} == {200.0}
    assert {rates[t] for t in rates if 10.0 <= t < 30.0} == {20.0}
    assert {rates[t] for t in rates if t >= 30.0} == {200.0}
    wall = {t_s: w for w, t_s, _ in tones}
    slow = wall[max(t for t in wall if t < 30.0)] - wall[min(t for t in wall if t >= 10.0)]
    assert 0.8 <= slow <= 1.5  # about 19 s of simulated time at warp 20: ~0.95 s of wall time
