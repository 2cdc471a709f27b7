"""Issue 5, end to end: "a job running when SAFE begins stops within one graph node and completes later".

flightd (a real process on Mosquitto) runs its governor on telemetry this test publishes itself
(``tlm/power``, ``tlm/thermal``, ``tlm/orbit`` every ``PERIOD`` s, ``t_s`` advancing with wall time).
The test is the simulator, so it publishes its time as hil.plant_service does (issue 10 item 8): a
tone on ``tlm/clock`` four times a period, which flightd's mission clock follows, and lock-step
(it runs at most ``LEAD`` ahead of the mission time flightd reports on ``tlm/compute``). A host
too busy to run this test's loop on time then stops the test's time too instead of reading as
stale telemetry; stopping the samples while the tones go on is the dropout, and SAFE is timed in
mission time against the last sample.
Healthy values give NOMINAL at full power (checked with the pure Governor first, so a change of the
budget math cannot silently turn this into a test of THROTTLED). The model is a stack of identity 3x3
convolutions: one run takes about a second, one node about 1.5 ms, and the result must equal the input.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from flight.governor import Governor, GovernorConfig
from ground.client import GroundClient
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode, encode
from link.messages import Event, EventKind, JobState, JobStateEvent, Mode, Telemetry
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from tests.support import FlightdProcess, wait_online, wait_until
from tests.test_executor import build_identity_stack

PERIOD = 0.2  # s, telemetry period
TONE = PERIOD / 4  # s, the time tone's period (hil.plant_service.TONES_PER_PERIOD)
LEAD = PERIOD  # s, how far the test's time may run ahead of flightd's reported mission time
CONTROL = 0.1  # s, flightd control period
STALE_PERIODS = 2.0
CHANNELS, LAYERS = 96, 800
TOPICS = TopicMap("sat1")
CONFIG = GovernorConfig(
    telemetry_period_s=PERIOD,
    stale_periods=STALE_PERIODS,
    required_channels=("power", "thermal"),
    safe_min_dwell_s=0.5,
    mode_min_dwell_s=60.0,  # NOMINAL <-> THROTTLED cannot happen within the test: only SAFE moves
)
SOC_FLOOR = 0.30  # default_limits(): soc_floor 0.30, hysteresis 0.05, debounce 3


def power_values(soc: float) -> dict[str, float]:
    return {"soc": soc, "battery_v": 15.8, "battery_wh": soc * 43.0, "solar_w": 80.0, "load_w": 25.0,
            "bus_w": 15.0, "compute_w": 8.0, "sunlit": 1.0}


THERMAL = {"board_c": 35.0, "radiator_c": 5.0}


def orbit_values(t_s: float) -> dict[str, float]:
    return {"sunlit": 1.0, "beta_deg": 0.0, "period_s": 5739.0, "eclipse_fraction": 0.372, "t_orbit_s": 100.0 + t_s}


def test_healthy_telemetry_is_nominal_at_full_power() -> None:
    """Precondition of the end-to-end tests, with the pure governor: healthy samples -> NOMINAL, 1 job."""
    gov = Governor(CONFIG)
    decision = None
    for k in range(10):
        t = k * PERIOD
        decision = gov.update(t, [Telemetry(sat="sat1", channel="power", t_s=t, values=power_values(0.9)),
                                  Telemetry(sat="sat1", channel="thermal", t_s=t, values=THERMAL)])
    assert decision is not None and decision.mode is Mode.NOMINAL
    assert decision.budget_w == pytest.approx(CONFIG.board.max_w)
    assert decision.concurrency == 1 and decision.duty_cycle == 1.0


@dataclass
class Ground:
    """Telemetry source and observer of events and job states (arrival times on this machine)."""

    url: str
    soc: Callable[[], float] = lambda: 0.9
    publishing: bool = True
    stopped: bool = False
    last_sample_wall: float = 0.0
    last_sample_t: float = 0.0
    flightd_t: float | None = None
    samples: int = 0
    modes: list[tuple[float, Mode, Event]] = field(default_factory=list)
    limits: list[Event] = field(default_factory=list)
    states: list[tuple[float, JobStateEvent]] = field(default_factory=list)

    async def publish_telemetry(self) -> None:
        while self.flightd_t is None:  # start from flightd's mission time (its uptime before any tone)
            await asyncio.sleep(0.01)
        k0 = int(self.flightd_t / TONE) + 1
        k = 0
        async with make_client(BrokerUrl.parse(self.url)) as client:
            next_at = time.monotonic()
            while not self.stopped:
                t = (k0 + k) * TONE
                if t - self.flightd_t < LEAD:  # lock-step: else wait for flightd to catch up
                    if k % 4 == 0 and self.publishing:
                        for channel, values in (("power", power_values(self.soc())), ("thermal", THERMAL),
                                                ("orbit", orbit_values(t))):
                            sample = Telemetry(sat="sat1", channel=channel, t_s=t, at_utc=time.time(), values=values)
                            await client.publish(TOPICS.telemetry(channel), encode(sample), qos=0)
                        self.last_sample_wall, self.last_sample_t = time.monotonic(), t
                        self.samples += 1
                    tone = Telemetry(sat="sat1", channel="clock", t_s=t, at_utc=time.time(), values={"rate": 1.0})
                    await client.publish(TOPICS.telemetry("clock"), encode(tone), qos=0)
                    k += 1
                next_at += TONE
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def observe(self, ready: asyncio.Event) -> None:
        async with make_client(BrokerUrl.parse(self.url)) as client:
            await client.subscribe([(TOPICS.events, 1), (TOPICS.job_state_all, 1), (TOPICS.telemetry("compute"), 0)])
            ready.set()
            async for m in client.messages:
                now = time.monotonic()
                payload = bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b""
                if not payload:
                    continue
                if str(m.topic) == TOPICS.telemetry("compute"):
                    self.flightd_t = decode(payload, Telemetry).message.t_s
                elif str(m.topic) == TOPICS.events:
                    event = decode(payload, Event).message
                    if event.kind is EventKind.MODE:
                        self.modes.append((now, Mode(event.details["mode"]), event))
                    elif event.kind is EventKind.LIMIT:
                        self.limits.append(event)
                else:
                    self.states.append((now, decode(payload, JobStateEvent).message))

    def timeline(self) -> str:
        """Modes, job states and the last sample, in arrival order (for failure messages)."""
        rows = [(t, f"mode {m.value}") for t, m, _ in self.modes]
        rows += [(t, f"job {e.job_id} {e.state.value} attempt {e.attempt} {e.reason or ''}") for t, e in self.states]
        rows.append((self.last_sample_wall, f"last telemetry sample (#{self.samples})"))
        t0 = min(t for t, _ in rows)
        return "\n".join(f"  {t - t0:8.3f} s  {what}" for t, what in sorted(rows))

    def mode_now(self) -> Mode | None:
        return self.modes[-1][1] if self.modes else None

    def job_states(self, job_id: str) -> list[tuple[float, JobStateEvent]]:
        return [(t, e) for t, e in self.states if e.job_id == job_id]


@pytest.fixture
async def rig(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[tuple[FlightdProcess, Ground]]:
    models = tmp_path / "models"
    build_identity_stack(models, "deep", layers=LAYERS, channels=CHANNELS)
    env = {"ORBITD_GOVERNOR": CONFIG.model_dump_json(), "ORBITD_CONTROL_PERIOD_S": str(CONTROL)}
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models, env=env)
    ground = Ground(mosquitto.url)
    ready = asyncio.Event()
    tasks = [asyncio.create_task(ground.observe(ready))]
    await ready.wait()
    proc.start()
    try:
        await wait_online(mosquitto.url)
        tasks.append(asyncio.create_task(ground.publish_telemetry()))
        await wait_until(lambda: ground.mode_now() is Mode.NOMINAL, 15, "NOMINAL on healthy telemetry")
        yield proc, ground
    finally:
        proc.stop()
        ground.stopped = True
        tasks[0].cancel()
        _, pending = await asyncio.wait(tasks, timeout=5)  # bounded: never hang the suite in a teardown
        for task in pending:
            task.cancel()


async def test_job_running_when_safe_begins_stops_within_a_node_and_completes_later(
    mosquitto: MosquittoBroker, rig: tuple[FlightdProcess, Ground]
) -> None:
    proc, ground = rig
    try:
        await preemption_scenario(mosquitto, proc, ground)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ntimeline:\n{ground.timeline()}\nflightd log:\n{proc.log()[-4000:]}") from None


async def preemption_scenario(mosquitto: MosquittoBroker, proc: FlightdProcess, ground: Ground) -> None:
    x = np.random.default_rng(11).standard_normal((1, CHANNELS, 64, 64)).astype(np.float32)
    async with GroundClient(mosquitto.url, "sat1") as client:
        job = await client.submit("deep", {"x": x}, job_id="safe-victim")

        def state_seq() -> list[JobState]:
            return [e.state for _, e in ground.job_states(job.job_id)]

        await wait_until(lambda: JobState.RUNNING in state_seq(), 10, "the job running")
        t_running = ground.job_states(job.job_id)[-1][0]
        n_modes = len(ground.modes)

        # telemetry stops (the tones go on): SAFE once the last sample is stale_periods periods old in
        # mission time, at the first tone past that (+ one tone), at most LEAD late (lock-step)
        ground.publishing = False
        await wait_until(lambda: len(ground.modes) > n_modes, 5, "a mode change after telemetry stopped")
        t_safe, mode, event = ground.modes[n_modes]
        assert mode is Mode.SAFE, event
        assert any("stale" in r for r in event.details["reasons"]), event.details
        since_last = float(event.details["t_s"]) - ground.last_sample_t
        assert STALE_PERIODS * PERIOD < since_last <= STALE_PERIODS * PERIOD + LEAD + TONE + 1e-9, since_last

        # the running job is stopped within a node or so and requeued, not failed
        await wait_until(lambda: state_seq()[-1:] == [JobState.QUEUED], 5, "the preempted job requeued")
        _, requeued = ground.job_states(job.job_id)[-1]
        assert requeued.reason is not None and "preempted" in requeued.reason and "safe" in requeued.reason
        assert requeued.attempt == 1
        run_time_before_safe = t_safe - t_running
        assert run_time_before_safe < 1.0, "SAFE must begin while the job is running"
        # flightd's own stamps: from its SAFE decision to its requeue, without the two broker hops and
        # this test's loop that arrival times add under CPU load
        stop_latency = requeued.at_utc - event.at_utc
        print(f"SAFE {since_last * 1e3:.0f} ms after the last sample; requeue {stop_latency * 1e3:.1f} ms after SAFE; "
              f"ran {run_time_before_safe * 1e3:.0f} ms before SAFE")
        assert stop_latency < 0.1, f"requeued {stop_latency * 1e3:.0f} ms after the SAFE event"
        info = await client.job(job.job_id)
        assert (info["state"], info["completions"]) == ("queued", 0)

        # nothing starts while SAFE
        await asyncio.sleep(3 * PERIOD)
        assert state_seq()[-1] is JobState.QUEUED and ground.mode_now() is Mode.SAFE

        # healthy telemetry again: SAFE is left, the job runs again and completes once, correctly
        ground.publishing = True
        fetched = await client.wait_result(job.job_id, timeout_s=20, ack=False)
        np.testing.assert_array_equal(fetched.outputs["y"], x)  # identity stack: y == x exactly
        info = await client.job(job.job_id)
        assert (info["state"], info["attempt"], info["completions"]) == ("done", 2, 1)
        starts = [e.attempt for _, e in ground.job_states(job.job_id) if e.state is JobState.RUNNING]
        assert starts == [1, 2] and fetched.result.attempt == 2, (
            f"published attempts {starts} and result attempt {fetched.result.attempt} disagree with the "
            f"journal's {info['attempt']}")

    assert state_seq() == [JobState.QUEUED, JobState.RUNNING, JobState.QUEUED, JobState.RUNNING, JobState.DONE]
    t_nominal = next(t for t, m, _ in ground.modes[n_modes + 1 :] if m is not Mode.SAFE)
    t_second_start = [t for t, e in ground.job_states(job.job_id) if e.state is JobState.RUNNING][1]
    assert t_second_start >= t_nominal - 0.05, "the job restarted before SAFE was left"
    assert proc.alive()
    assert "preempted safe-victim" in proc.log()


async def test_soc_noisy_at_the_floor_makes_at_most_one_transition(
    mosquitto: MosquittoBroker, rig: tuple[FlightdProcess, Ground]
) -> None:
    """SoC jitters within +-0.004 of the 30 % floor for 30 samples. The sequence below the floor three
    times in a row (the debounce) at least once, so SAFE is entered exactly once, and it is never left:
    no sample reaches the hysteresis band (>= 0.35)."""
    proc, ground = rig
    rng = np.random.default_rng(5)
    noise = list(SOC_FLOOR + rng.uniform(-0.004, 0.004, 30))
    below = [s < SOC_FLOOR for s in noise]
    assert any(all(below[i : i + 3]) for i in range(len(below) - 2)), "the sequence must trip the debounce"
    assert sum(below) < len(below) and max(noise) < SOC_FLOOR + 0.05
    queue = iter(noise)
    n_modes = len(ground.modes)
    n_limits = len(ground.limits)
    start = ground.samples
    ground.soc = lambda: next(queue, SOC_FLOOR - 0.001)
    await wait_until(lambda: ground.samples >= start + len(noise) + 2, 20, "the noisy samples")
    await asyncio.sleep(2 * CONTROL)
    changes = [m for _, m, _ in ground.modes[n_modes:]]
    assert changes == [Mode.SAFE], changes
    safe_event = ground.modes[n_modes][2]
    assert any("soc_floor" in r for r in safe_event.details["reasons"]), safe_event.details
    # the debounced trip is its own event on the wire, once: the noise never clears the limit
    trips = [e.message for e in ground.limits[n_limits:] if "soc_floor" in e.message]
    assert len(trips) == 1 and "tripped" in trips[0], trips
    assert proc.alive()
