"""The onboard broker bridged to the ground broker through the link emulator (two real Mosquittos):
QoS 1 messages published during an outage arrive after the next acquisition, exactly once, and so do
messages waiting across restarts of the onboard broker (the bridge's end) in contact and in a gap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from hil.link.board import BoardSide, LoopbackBoard
from hil.link.bridge import bridge_config, bridge_topics, connection_state_topic
from hil.link.clock import WarpClock
from hil.link.contact import ContactPlan, ContactWindow
from hil.link.relay import LinkRelay
from hil.mosquitto_broker import MosquittoBroker
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client

TOPICS = TopicMap("sat1")


def test_bridge_config_maps_the_two_trees() -> None:
    lines = bridge_config(TOPICS, ("10.0.0.1", 18830))
    assert lines[0] == "connection orbitd-sat1" and "address 10.0.0.1:18830" in lines
    assert "cleansession false" in lines and "local_cleansession false" in lines
    topics = {t.pattern: (t.direction, t.qos) for t in bridge_topics(TOPICS)}
    assert topics[TOPICS.job_submit] == ("in", 1) and topics[TOPICS.command] == ("in", 1)
    assert topics[TOPICS.upload_all] == ("in", 1) and topics[TOPICS.sequence_command] == ("in", 1)
    assert topics[TOPICS.result_all] == ("out", 1) and topics[TOPICS.events] == ("out", 1)
    assert topics[TOPICS.command_reply_all] == ("out", 1) and topics[TOPICS.upload_progress_all] == ("out", 1)
    assert topics[TOPICS.telemetry_all] == ("out", 0)
    assert f"topic {TOPICS.job_submit} in 1" in lines
    assert "restart_timeout 1 1" in lines  # Mosquitto 2.0.11 ignores a lone constant: see hil.link.bridge
    assert "restart_timeout 2 30" in bridge_config(TOPICS, ("h", 1), restart_timeout_s=(2, 30))
    for bad in ({"keepalive_s": 4}, {"restart_timeout_s": 0}, {"restart_timeout_s": (5, 2)}, {"name": "a b"}):
        with pytest.raises(ValueError):
            bridge_config(TOPICS, ("h", 1), **bad)  # type: ignore[arg-type]


async def collect(
    url: BrokerUrl, topics: list[tuple[str, int]], into: list[tuple[str, bytes]], ready: asyncio.Event
) -> None:
    """Subscribe with a persistent session and append every message until cancelled."""
    async with make_client(url, identifier=f"probe-{url.port}", clean_session=False) as client:
        await client.subscribe(topics)
        ready.set()
        async for message in client.messages:
            into.append((str(message.topic), bytes(message.payload)))  # type: ignore[arg-type]


async def wait_for(predicate: object, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


@dataclass
class Bridged:
    """Two Mosquittos bridged through a relay under ``plan`` at warp 200, and a probe on each:
    ``at_ground`` (everything the ground broker carries, and the bridge's connection state) and
    ``onboard_got`` (job submissions onboard; the probe connects again after an onboard restart)."""

    clock: WarpClock
    relay: LinkRelay
    ground: MosquittoBroker
    onboard: MosquittoBroker
    ground_url: BrokerUrl
    onboard_url: BrokerUrl
    at_ground: list[tuple[str, bytes]] = field(default_factory=list)
    onboard_got: list[tuple[str, bytes]] = field(default_factory=list)
    state: str = connection_state_topic("orbitd-sat1")

    def bridge_ups(self) -> int:
        return self.at_ground.count((self.state, b"1"))

    async def held_until_acquisition(self, job: str, result: str) -> float:
        """``job`` (sent up) and ``result`` (sent down) in a gap: neither has crossed yet; then wait
        until both have, and half a second more for a repeat to show up. The clock when both had."""
        up, down = (TOPICS.job_submit, job.encode()), (TOPICS.result(job), result.encode())
        assert up not in self.onboard_got and down not in self.at_ground
        await wait_for(lambda: down in self.at_ground, 10.0)
        await wait_for(lambda: up in self.onboard_got, 10.0)
        arrived = self.clock.now()
        await asyncio.sleep(0.5)
        return arrived


@contextlib.asynccontextmanager
async def bridged(plan: ContactPlan, tmp_path: Path, board: BoardSide) -> AsyncIterator[Bridged]:
    """The onboard broker runs on ``board``, bridged to a ground broker on loopback through a relay at
    the board's ``ground_address``; yields once both probes listen and the bridge is up."""
    ground = MosquittoBroker(tmp_path / "ground")
    ground.start()
    clock = WarpClock(warp=200.0)
    relay = LinkRelay(("127.0.0.1", ground.port), plan, clock, listen=(board.ground_address, 0))
    await relay.start()
    onboard = MosquittoBroker(tmp_path / "onboard", persistent=True, extra_config=bridge_config(TOPICS, relay.address),
                              host=board.board_address, launcher=board.launcher)
    onboard.start()
    b = Bridged(clock, relay, ground, onboard, BrokerUrl("127.0.0.1", ground.port),
                BrokerUrl(board.board_address, onboard.port))
    ready = (asyncio.Event(), asyncio.Event())
    probes = [
        asyncio.create_task(collect(b.ground_url, [(TOPICS.everything, 1), (b.state, 1)], b.at_ground, ready[0])),
        asyncio.create_task(collect_across_restarts(b.onboard_url, [(TOPICS.job_submit, 1)], b.onboard_got, ready[1])),
    ]
    try:
        await asyncio.gather(*(r.wait() for r in ready))
        await wait_for(lambda: b.bridge_ups() == 1, 5.0)  # the bridge is up through the relay
        yield b
    finally:
        for p in probes:
            p.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        onboard.stop()
        await relay.close()
        ground.stop()


async def test_qos1_published_in_an_outage_arrives_after_aos_exactly_once(tmp_path: Path) -> None:
    await outage_exactly_once(LoopbackBoard(), tmp_path)


async def outage_exactly_once(board: BoardSide, tmp_path: Path) -> None:
    """Plan at warp 200: contact [0, 300) s, gap [300, 500) s (1 s of wall time), contact from 500 s.
    A job submitted on the ground and a result published onboard in the gap each reach the other side
    once after acquisition; telemetry (QoS 0) published in the gap is not queued. The onboard broker
    runs on ``board``, bridged to a ground broker on loopback through a relay at the board's
    ``ground_address``."""
    plan = ContactPlan(0.0, 5000.0, (ContactWindow("a", 0.0, 300.0), ContactWindow("b", 500.0, 5000.0)), 0.005)
    async with bridged(plan, tmp_path, board) as link:
        at_ground, onboard_got, clock, state = link.at_ground, link.onboard_got, link.clock, link.state
        async with make_client(link.ground_url) as g, make_client(link.onboard_url) as sat:
            await g.publish(TOPICS.job_submit, b"job-0", qos=1)
            await sat.publish(TOPICS.result("job-0"), b"result-0", qos=1)
            await wait_for(lambda: (TOPICS.result("job-0"), b"result-0") in at_ground, 5.0)
            await wait_for(lambda: (TOPICS.job_submit, b"job-0") in onboard_got, 5.0)

            await clock.sleep_until(330.0)  # in the gap: the bridge was cut at 300 s
            assert (state, b"0") in at_ground  # the bridge's will, published by the ground broker
            await g.publish(TOPICS.job_submit, b"job-1", qos=1)
            await sat.publish(TOPICS.result("job-1"), b"result-1", qos=1)
            await sat.publish(TOPICS.telemetry("power"), b"tlm-in-gap", qos=0)
            await asyncio.sleep(0.1)
            arrived = await link.held_until_acquisition("job-1", "result-1")
    assert arrived >= 500.0
    assert onboard_got.count((TOPICS.job_submit, b"job-1")) == 1
    assert onboard_got.count((TOPICS.job_submit, b"job-0")) == 1
    assert at_ground.count((TOPICS.result("job-1"), b"result-1")) == 1
    assert at_ground.count((TOPICS.result("job-0"), b"result-0")) == 1
    assert (TOPICS.telemetry("power"), b"tlm-in-gap") not in at_ground
    kinds = [e.kind for e in link.relay.stats.events]
    assert kinds.count("cut_los") == 1 and kinds.count("accepted") >= 2
    assert all(300.0 <= e.t_s < 500.0 for e in link.relay.stats.events if e.kind == "refused")


async def collect_across_restarts(url: BrokerUrl, topics: list[tuple[str, int]], into: list[tuple[str, bytes]],
                                  ready: asyncio.Event) -> None:
    """:func:`collect`, connecting again (same persistent session) whenever the broker goes away."""
    while True:
        try:
            await collect(url, topics, into, ready)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)


async def test_bridge_restarts_in_contact_and_in_a_gap_lose_nothing_and_repeat_nothing(tmp_path: Path) -> None:
    """The onboard broker (the bridge's end) restarted in contact, then again in a gap with a job and a
    result waiting each way: after the next acquisition each message has arrived once. Plan at warp 200:
    contact [0, 300) s, gap [300, 700) s (2 s of wall time), contact from 700 s."""
    plan = ContactPlan(0.0, 5000.0, (ContactWindow("a", 0.0, 300.0), ContactWindow("b", 700.0, 5000.0)), 0.005)
    async with bridged(plan, tmp_path, LoopbackBoard()) as link:
        at_ground, onboard_got, clock, onboard = link.at_ground, link.onboard_got, link.clock, link.onboard

        async def publish_onboard(topic: str, payload: bytes) -> None:
            async with make_client(link.onboard_url) as sat:
                await sat.publish(topic, payload, qos=1)

        async with make_client(link.ground_url) as g:
            # in contact: one message each way, then the onboard broker restarts; the bridge comes back
            await g.publish(TOPICS.job_submit, b"job-0", qos=1)
            await publish_onboard(TOPICS.result("job-0"), b"result-0")
            await wait_for(lambda: (TOPICS.result("job-0"), b"result-0") in at_ground, 5.0)
            await wait_for(lambda: (TOPICS.job_submit, b"job-0") in onboard_got, 5.0)
            onboard.stop()
            onboard.start()
            await wait_for(lambda: link.bridge_ups() == 2, 10.0)
            assert clock.now() < 300.0, "the restart in contact took the whole contact"

            # in the gap: one message waits on each side, and the onboard broker restarts again
            await clock.sleep_until(330.0)
            await g.publish(TOPICS.job_submit, b"job-1", qos=1)
            await publish_onboard(TOPICS.result("job-1"), b"result-1")
            await asyncio.sleep(0.2)
            onboard.stop()
            onboard.start()
            assert clock.now() < 700.0, "the restart in the gap took the whole gap"
            arrived = await link.held_until_acquisition("job-1", "result-1")
    assert arrived >= 700.0
    for n in (0, 1):
        assert onboard_got.count((TOPICS.job_submit, f"job-{n}".encode())) == 1, onboard_got
        assert at_ground.count((TOPICS.result(f"job-{n}"), f"result-{n}".encode())) == 1, at_ground
