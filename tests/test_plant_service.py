"""``hil plant`` on a real Mosquitto: publishes power/thermal/orbit telemetry and follows the compute
channel (more busy cores -> more compute_w in the plant's power telemetry)."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode, encode
from link.messages import Telemetry
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client

SAT = "plant-test"
IDLE_W, W_PER_CORE = 12.0, 35.0  # nominal-550km board profile


async def test_hil_plant_publishes_and_reacts_to_compute(mosquitto: MosquittoBroker) -> None:
    topics = TopicMap(SAT)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hil.cli",
            "plant",
            "--broker",
            mosquitto.url,
            "--sat",
            SAT,
            "--scenario",
            "nominal-550km",
            "--warp",
            "100",
            "--rate",
            "1",
            "--duration",
            "100000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen: dict[str, list[Telemetry]] = {"power": [], "thermal": [], "orbit": []}
    try:
        async with make_client(BrokerUrl.parse(mosquitto.url), identifier="plant-test-ground") as client:
            await client.subscribe(topics.telemetry_all, qos=0)

            async def publish_busy(busy: float) -> None:
                msg = Telemetry(sat=SAT, channel="compute", t_s=0.0, values={"busy_cores": busy})
                await client.publish(topics.telemetry("compute"), encode(msg), qos=0)

            async def collect_until(pred: object, timeout_s: float) -> Telemetry:
                async with asyncio.timeout(timeout_s):
                    async for m in client.messages:
                        tlm = decode(bytes(m.payload), Telemetry).message
                        if tlm.channel in seen:
                            seen[tlm.channel].append(tlm)
                        if tlm.channel == "power" and pred(tlm):  # type: ignore[operator]
                            return tlm
                raise AssertionError("unreachable")

            first = await collect_until(lambda t: True, 20.0)
            assert first.values["compute_w"] == pytest.approx(IDLE_W)
            await publish_busy(2.0)
            busy = await collect_until(lambda t: t.values["compute_w"] > IDLE_W + 1.0, 10.0)
            assert busy.values["compute_w"] == pytest.approx(IDLE_W + 2 * W_PER_CORE)
            assert busy.values["load_w"] == pytest.approx(35.0 + IDLE_W + 2 * W_PER_CORE)
            await publish_busy(0.5)
            half = await collect_until(lambda t: t.values["compute_w"] < IDLE_W + W_PER_CORE, 10.0)
            assert half.values["compute_w"] == pytest.approx(IDLE_W + 0.5 * W_PER_CORE)
            assert half.t_s > busy.t_s > first.t_s
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert seen["thermal"] and seen["orbit"], "all three plant channels are published"
    assert {"board_c", "radiator_c"} <= set(seen["thermal"][-1].values)
    orbit = seen["orbit"][-1].values
    assert orbit["period_s"] == pytest.approx(5739.0, abs=1.0) and orbit["beta_deg"] == 0.0
    # simulated time runs at about warp x wall time: consecutive power samples 1 s apart in t_s
    ts = [t.t_s for t in seen["power"]]
    assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(ts))


async def test_hil_plant_dropout_fault_suppresses_published_samples(
    mosquitto: MosquittoBroker, tmp_path: object
) -> None:
    """A scenario with a power dropout on [20, 40) s: no power samples with t_s in that window."""
    from pathlib import Path

    from hil.scenario import SCENARIO_DIR

    path = Path(str(tmp_path)) / "dropout.toml"
    path.write_text(
        (SCENARIO_DIR / "nominal-550km.toml").read_text()
        + '\n[[faults]]\nkind = "dropout"\nt_s = 20.0\nuntil_s = 40.0\nchannel = "power"\n'
    )
    topics = TopicMap(SAT)
    got: list[float] = []
    thermal: list[float] = []
    async with make_client(BrokerUrl.parse(mosquitto.url), identifier="plant-test-ground2") as client:
        await client.subscribe(topics.telemetry_all, qos=0)
        from hil.plant_service import serve

        task = asyncio.create_task(serve(mosquitto.url, SAT, str(path), warp=200.0, rate_hz=1.0, duration_s=60.0))
        t_end = time.monotonic() + 20.0
        async with asyncio.timeout(20.0):
            async for m in client.messages:
                tlm = decode(bytes(m.payload), Telemetry).message
                (got if tlm.channel == "power" else thermal if tlm.channel == "thermal" else []).append(tlm.t_s)
                if (tlm.t_s >= 60.0 - 1e-9 and tlm.channel == "orbit") or time.monotonic() > t_end:
                    break
        await task
    assert got and not [t for t in got if 20.0 <= t < 40.0]
    assert [t for t in thermal if 20.0 <= t < 40.0], "other channels are not dropped"
    assert max(got) == pytest.approx(60.0)


# ------------------------------------------------------------------------------------- time (item 8)


def _dropout_path(tmp_path: Path, start_s: float, end_s: float, channel: str | None = None) -> Path:
    from hil.scenario import SCENARIO_DIR

    path = tmp_path / "dropout.toml"
    fault = f'\n[[faults]]\nkind = "dropout"\nt_s = {start_s}\nuntil_s = {end_s}\n'
    if channel is not None:
        fault += f'channel = "{channel}"\n'
    path.write_text((SCENARIO_DIR / "nominal-550km.toml").read_text() + fault)
    return path


def test_plant_runner_tones_start_every_quarter_period_and_after_each_sample(tmp_path: Path) -> None:
    """Period 40 s, physics 1 s: a tone at 0, then every 10 s; each sample is followed by the tone of
    its instant; a dropout withholds samples (every channel) but never the tone."""
    from hil.plant_service import PlantRunner
    from hil.scenario import load_scenario

    runner = PlantRunner(load_scenario(_dropout_path(tmp_path, 100.0, 200.0)), period_s=40.0, rate=200.0)
    out = runner.advance_to(5.0) + runner.advance_to(300.0)
    tones = [s.t_s for s in out if s.channel == "clock"]
    assert tones == [float(t) for t in range(0, 301, 10)]
    assert all(s.values == {"rate": 200.0, "met_s": s.t_s} for s in out if s.channel == "clock")
    power = [s.t_s for s in out if s.channel == "power"]
    assert power == [40.0, 80.0, 200.0, 240.0, 280.0]  # 120 and 160 withheld: the dropout is [100, 200)
    assert [s.t_s for s in out if s.channel == "radiation"] == power  # the environment at the same instants
    for i, s in enumerate(out):
        if s.channel == "radiation":  # the last channel of a sample instant: the tone of that instant follows
            assert (out[i + 1].channel, out[i + 1].t_s) == ("clock", s.t_s)


def test_pacer_slows_down_instead_of_bursting_after_a_stall() -> None:
    from hil.plant_service import Pacer

    pacer = Pacer(warp=200.0, max_lag_s=40.0)
    assert pacer.target(0.0, 100.0) == 0.0
    assert pacer.target(0.0, 100.1) == pytest.approx(20.0)
    assert pacer.wall_at(30.0) == pytest.approx(100.15)
    # the host stalls 2 s (400 s simulated due): the plant may go one period ahead, not 400 s
    assert pacer.target(20.0, 102.1) == pytest.approx(60.0) and pacer.slips == 1
    # and continues at the warp from there: nothing is rushed later either
    assert pacer.target(60.0, 102.2) == pytest.approx(80.0) and pacer.slips == 1


def test_lockstep_holds_the_plant_near_flightds_time_until_flightd_is_gone() -> None:
    from hil.plant_service import LockStep

    lock = LockStep(lead_s=40.0, start_s=0.0, timeout_s=5.0)
    assert lock.limit(10.0) == 40.0  # never heard: held near the start
    lock.heard(3.0, 10.1)  # before the first tone flightd's time is its uptime
    assert lock.limit(10.2) == 43.0
    lock.heard(120.0, 11.0)
    lock.heard(100.0, 11.1)  # an older report does not pull the limit back
    assert lock.limit(11.2) == 160.0
    assert lock.limit(16.0) == 160.0 and lock.limit(16.2) == math.inf  # silent > 5 s: gone, no longer held


@settings(max_examples=200, deadline=None)
@given(jumps=st.lists(st.tuples(st.floats(0, 1e5), st.floats(1e-3, 1e5)), max_size=4),
       t=st.floats(0, 3e5))
def test_clock_jumps_own_time_inverts_the_published_mission_time(jumps: list[tuple[float, float]], t: float) -> None:
    from hil.plant_service import ClockJumps

    c = ClockJumps(tuple(jumps))
    assert c.own(c.mission(t)) == pytest.approx(t, abs=1e-6)
    assert c.mission(t + 1.0) >= c.mission(t) + 1.0 - 1e-9  # never back
    for at, jump in c.jumps:  # a mission time inside a jump was never published: it is the jump's instant
        inside = c.mission(at) - jump / 2
        assert c.own(inside) == pytest.approx(at)


def test_clock_jumps_backwards_or_not_finite_are_refused() -> None:
    from hil.plant_service import ClockJumps

    for bad in ((100.0, -3600.0), (100.0, 0.0), (math.nan, 10.0), (100.0, math.inf)):
        with pytest.raises(ValueError, match="positive number of seconds"):
            ClockJumps((bad,))


async def test_lockstep_across_a_clock_jump_neither_runs_ahead_nor_stalls(mosquitto: MosquittoBroker) -> None:
    """A +1 h jump of the published mission time at t = 200 s. A follower (flightd's part of lock-step:
    report the latest tone's t_s on ``compute``) freezes for 1.5 s of wall time at the first jumped
    tone: the plant, comparing the reported (jumped) time on its own timebase, must stay within one
    period of it instead of running an hour ahead; it repeats its tone while held; and when the
    follower goes on, the plant reaches its end instead of stalling."""
    from hil.plant_service import TONE_REPEAT_S, serve
    from hil.scenario import load_scenario

    period, warp, jump_at, jump = 40.0, 200.0, 200.0, 3600.0
    topics = TopicMap(SAT)
    tones: list[tuple[float, float, float]] = []  # (wall, t_s, met_s)
    frozen: list[float] = []  # wall times of the freeze: start, end
    ready = asyncio.Event()

    async def follower() -> None:
        async with make_client(BrokerUrl.parse(mosquitto.url), identifier="lockstep-follower") as client:
            await client.subscribe(topics.telemetry("clock"), qos=0)
            ready.set()

            async def report() -> None:
                reported = 0.0
                while True:
                    latest = max((t for _, t, _ in tones), default=0.0)
                    if not frozen and latest >= jump_at + jump:
                        frozen.append(time.monotonic())  # the freeze begins: reported stays where it is
                    if len(frozen) == 1 and time.monotonic() - frozen[0] > 1.5:
                        frozen.append(time.monotonic())  # and ends
                    if len(frozen) != 1:
                        reported = latest
                    msg = Telemetry(sat=SAT, channel="compute", t_s=reported, values={"busy_cores": 0.0})
                    await client.publish(topics.telemetry("compute"), encode(msg), qos=0)
                    await asyncio.sleep(0.05)

            reporter = asyncio.create_task(report())
            try:
                async for m in client.messages:
                    tlm = decode(bytes(m.payload), Telemetry).message
                    tones.append((time.monotonic(), tlm.t_s, tlm.values["met_s"]))
            finally:
                reporter.cancel()

    task = asyncio.create_task(follower())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        scenario = load_scenario("nominal-550km")
        await asyncio.wait_for(serve(mosquitto.url, SAT, scenario, warp=warp, rate_hz=1.0 / period, duration_s=800.0,
                                     lockstep_s=period, clock_jumps=((jump_at, jump),)), 60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(frozen) == 2, "the follower saw the jump and went on"
    frozen_own = min(t for _, t, _ in tones if t >= jump_at + jump) - jump
    during = [(w, met) for w, _, met in tones if frozen[0] <= w <= frozen[1]]
    assert max(met for _, met in during) <= frozen_own + period + 1.0, (frozen_own, during[-5:])
    late = [w for w, _ in during if w >= frozen[1] - 4 * TONE_REPEAT_S]
    assert late, "a held plant repeats its tone"
    assert max(met for _, _, met in tones) == pytest.approx(800.0)
    assert all(t == pytest.approx(met + (jump if met >= jump_at else 0.0)) for _, t, met in tones)


async def test_a_stalled_plant_does_not_send_flightd_safe_but_a_dropout_does(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """issue 10 item 8, end to end with a real flightd: the plant's event loop is blocked for 1.5 s of
    wall time (300 s simulated at warp 200, far over the 80 s staleness limit), as a busy host does to
    it; flightd must not go SAFE (before the time tone it extrapolated and did). The scenario's own
    dropout of every channel on [400, 700) s must still send it SAFE once the last sample before it
    (t = 360 s) is two periods old, and NOMINAL again at the first sample after it (t = 720 s)."""
    from hil.governor_sim import governor_config_for
    from hil.plant_service import serve
    from hil.scenario import load_scenario
    from link.messages import Event, EventKind
    from tests.support import FlightdProcess, wait_online

    period, warp = 40.0, 200.0
    path = _dropout_path(tmp_path, 400.0, 700.0)
    scenario = load_scenario(path)
    gov = governor_config_for(scenario.build_plant(), scenario.limits, period)
    models = tmp_path / "models"
    models.mkdir()
    flightd = FlightdProcess(mosquitto.url, tmp_path / "fd" / "data", models,
                             env={"ORBITD_GOVERNOR": gov.model_dump_json(), "ORBITD_CONTROL_PERIOD_S": "0.05"})
    (tmp_path / "fd").mkdir()
    modes: list[tuple[float, str, list[str]]] = []
    ready = asyncio.Event()

    async def collect() -> None:
        async with make_client(BrokerUrl.parse(mosquitto.url), identifier="stall-test-events") as client:
            await client.subscribe(TopicMap("sat1").events, qos=1)
            ready.set()
            async for m in client.messages:
                if isinstance(m.payload, bytes | bytearray) and m.payload:
                    e = decode(bytes(m.payload), Event).message
                    if e.kind is EventKind.MODE:
                        modes.append((float(e.details["t_s"]), str(e.details["mode"]), list(e.details["reasons"])))

    async def stall_the_loop() -> None:
        await asyncio.sleep(0.5)  # simulated ~100 s: before the dropout, after the first samples
        time.sleep(1.5)  # blocks the event loop the plant runs in, as CPU starvation does

    collector = asyncio.create_task(collect())
    flightd.start()
    try:
        await asyncio.wait_for(ready.wait(), 10)
        await wait_online(mosquitto.url)
        stall = asyncio.create_task(stall_the_loop())
        pacer = await serve(mosquitto.url, "sat1", scenario, warp=warp, rate_hz=1.0 / period, duration_s=900.0,
                            lockstep_s=period)
        await stall
        await asyncio.sleep(0.3)
        assert flightd.alive(), flightd.log()[-3000:]
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        flightd.stop()
    assert pacer.slips >= 1, "the stall happened while the plant ran"
    changes = [(t, m) for t, m, _ in modes if t <= 900.0]
    assert [m for _, m in changes] == ["nominal", "safe", "nominal"], modes
    t_safe, t_back = changes[1][0], changes[2][0]
    stale_at = 360.0 + 2 * period  # the last sample before the dropout is at 360 s
    assert stale_at <= t_safe <= stale_at + period / 4 + 10.0, modes  # next tone, then a control cycle
    assert any("stale" in r for r in modes[1][2])
    assert 720.0 - period / 4 <= t_back <= 720.0 + period / 4, modes  # the first sample after it
