"""``hil plant``: the plant simulator on MQTT.

Steps a :class:`hil.plant.Plant` in simulated time running ``warp`` times faster than the wall clock,
publishes Telemetry on the ``power``, ``thermal`` and ``orbit`` channels every ``1 / rate_hz``
simulated seconds (QoS 0; dropout/stuck/noisy faults applied to what is published), and takes the
compute load from flightd's ``compute`` channel (``busy_cores``, held until the next sample).

The pure part, :class:`PlantRunner`, knows nothing of MQTT or clocks: ``advance_to(t_s)`` returns the
samples due. :func:`serve` is the I/O shell around it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

import aiomqtt

from hil.plant.faults import FaultSchedule, TelemetryFaults
from hil.plant.plant import Plant
from hil.plant.telemetry import channel_values
from hil.scenario import Scenario, load_scenario
from link.codec import WireError, decode, encode
from link.messages import Telemetry
from link.telemetry import BUSY_CORES, COMPUTE
from link.topics import TopicMap
from link.transport import BrokerUrl, TlsFiles, make_client

log = logging.getLogger("hil.plant")


@dataclass(frozen=True)
class Sample:
    """One telemetry sample due for publication (values after telemetry faults)."""

    channel: str
    t_s: float
    values: dict[str, float]


class PlantRunner:
    """A plant stepped at ``physics_dt_s`` (s) with telemetry every ``period_s`` simulated seconds."""

    def __init__(self, scenario: Scenario, period_s: float, physics_dt_s: float = 1.0, seed: int = 0) -> None:
        if period_s <= 0 or physics_dt_s <= 0:
            raise ValueError("telemetry period and physics step must be > 0")
        self.scenario = scenario
        self.plant: Plant = scenario.build_plant()
        self.period_s = period_s
        self.physics_dt_s = min(physics_dt_s, period_s)
        self.faults = TelemetryFaults(FaultSchedule(scenario.faults), seed)
        self.busy_cores = 0.0
        self._next_sample_s = self.plant.t_s + period_s

    @property
    def t_s(self) -> float:
        return self.plant.t_s

    def set_busy_cores(self, busy_cores: float) -> None:
        """The compute load from now on (flightd's time-averaged busy cores)."""
        if math.isfinite(busy_cores):
            self.busy_cores = max(0.0, busy_cores)

    def advance_to(self, t_s: float) -> list[Sample]:
        """Step the plant up to ``t_s`` and return the telemetry samples that fell due on the way."""
        out: list[Sample] = []
        while self.plant.t_s < t_s - 1e-9:
            dt = min(self.physics_dt_s, self._next_sample_s - self.plant.t_s)
            state = self.plant.step(dt, busy_cores=self.busy_cores)
            if state.t_s >= self._next_sample_s - 1e-9:
                self._next_sample_s += self.period_s
                for channel, values in channel_values(state).items():
                    published = self.faults.apply(state.t_s, channel, values)
                    if published is not None:
                        out.append(Sample(channel, state.t_s, published))
        return out


async def serve(
    broker: str,
    sat: str,
    scenario: str | Scenario,
    warp: float = 1.0,
    rate_hz: float | None = None,
    duration_s: float | None = None,
    physics_dt_s: float = 1.0,
    tls: TlsFiles | None = None,
) -> None:
    """Run the plant on ``broker`` for satellite ``sat`` until ``duration_s`` simulated seconds (None:
    forever, or until cancelled). ``rate_hz``: telemetry samples per simulated second (default: the
    scenario's telemetry period). ``tls``: the ``plant-<sat>`` identity on the locked broker."""
    if warp <= 0:
        raise ValueError("warp must be > 0")
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    period = 1.0 / rate_hz if rate_hz else sc.telemetry_period_s
    runner = PlantRunner(sc, period, physics_dt_s)
    topics = TopicMap(sat)
    compute_topic = topics.telemetry(COMPUTE)
    async with make_client(BrokerUrl.parse(broker), identifier=f"hil-plant-{sat}", tls=tls) as client:
        await client.subscribe(compute_topic, qos=0)
        listener = asyncio.create_task(_listen(client, runner, compute_topic))
        log.info("plant %s for %s on %s: warp %g, telemetry every %g s", sc.name, sat, broker, warp, period)
        try:
            wall0 = time.monotonic()
            t0 = runner.t_s
            end = math.inf if duration_s is None else t0 + duration_s
            while runner.t_s < end:
                target = min(t0 + warp * (time.monotonic() - wall0), end)
                for sample in runner.advance_to(target):
                    message = Telemetry(
                        sat=sat, channel=sample.channel, t_s=sample.t_s, at_utc=time.time(), values=sample.values
                    )
                    await client.publish(topics.telemetry(sample.channel), encode(message), qos=0)
                next_wall = wall0 + (runner.t_s + runner.physics_dt_s - t0) / warp
                await asyncio.sleep(max(next_wall - time.monotonic(), 0.0))
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)


async def _listen(client: aiomqtt.Client, runner: PlantRunner, topic: str) -> None:
    async for message in client.messages:
        if not message.topic.matches(topic) or not isinstance(message.payload, bytes | bytearray):
            continue
        try:
            tlm = decode(bytes(message.payload), Telemetry).message
        except WireError as exc:
            log.warning("ignoring compute telemetry: %s", exc)
            continue
        busy = tlm.values.get(BUSY_CORES)
        if busy is not None:
            runner.set_busy_cores(busy)


__all__ = ["PlantRunner", "Sample", "serve"]
