"""The link emulator on loopback with a real Mosquitto: delay, rate, loss bursts, cuts at loss of signal
and reconnection at acquisition. Plans are short and warped so the file runs in seconds."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time

import aiomqtt
import numpy as np
import pytest

from hil.link.clock import WarpClock
from hil.link.contact import ContactPlan, ContactWindow, relay_plan
from hil.link.model import Direction, LinkParams, LossBursts, TcpRecovery
from hil.link.relay import LinkRelay
from hil.mosquitto_broker import MosquittoBroker
from link.transport import BrokerUrl, make_client


def urls(mosquitto: MosquittoBroker, relay: LinkRelay) -> tuple[BrokerUrl, BrokerUrl]:
    """(through the relay, straight to the broker)."""
    return BrokerUrl("127.0.0.1", relay.port), BrokerUrl("127.0.0.1", mosquitto.port)


async def receive(
    url: BrokerUrl, topic: str, n: int, subscribed: asyncio.Event, timeout_s: float = 10.0
) -> list[tuple[float, bytes]]:
    """The first ``n`` messages on ``topic`` with the monotonic time each arrived."""
    out: list[tuple[float, bytes]] = []
    async with make_client(url) as client:
        await client.subscribe(topic, qos=1)
        subscribed.set()
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                out.append((time.monotonic(), bytes(message.payload)))  # type: ignore[arg-type]
                if len(out) == n:
                    return out
    return out


async def latencies(publisher: BrokerUrl, subscriber: BrokerUrl, topic: str, n: int = 10) -> list[float]:
    """One-way latencies (s) of ``n`` QoS 0 messages stamped with their send time."""
    subscribed = asyncio.Event()
    rx = asyncio.create_task(receive(subscriber, topic, n, subscribed))
    await subscribed.wait()
    async with make_client(publisher) as client:
        for _ in range(n):
            await client.publish(topic, f"{time.monotonic():.6f}", qos=0)
            await asyncio.sleep(0.02)
        got = await rx
    return [t - float(p) for t, p in got]


async def test_one_way_delay_applies_in_both_directions(mosquitto: MosquittoBroker) -> None:
    delay = 0.15
    async with LinkRelay(("127.0.0.1", mosquitto.port), relay_plan(delay), WarpClock()) as relay:
        via, direct = urls(mosquitto, relay)
        down = await latencies(via, direct, "t/down")
        up = await latencies(direct, via, "t/up")
    for name, lat in (("down", down), ("up", up)):
        assert min(lat) >= delay - 0.002, (name, lat)
        assert statistics.median(lat) < delay + 0.05, (name, lat)
    assert relay.stats.bytes[Direction.DOWN] > 0 and relay.stats.bytes[Direction.UP] > 0


async def test_rate_limit_per_direction(mosquitto: MosquittoBroker) -> None:
    """200 kB down at 200 kB/s and 100 kB up at 100 kB/s, at the same time: about 1 s each."""
    params = LinkParams(up_bytes_s=100_000.0, down_bytes_s=200_000.0)
    async with LinkRelay(("127.0.0.1", mosquitto.port), relay_plan(0.0), WarpClock(), params) as relay:
        via, direct = urls(mosquitto, relay)

        async def transfer(pub: BrokerUrl, sub: BrokerUrl, topic: str, size: int) -> float:
            subscribed = asyncio.Event()
            rx = asyncio.create_task(receive(sub, topic, 1, subscribed))
            await subscribed.wait()
            async with make_client(pub) as client:
                t0 = time.monotonic()
                await client.publish(topic, b"x" * size, qos=0)
                ((t1, payload),) = await rx
            assert len(payload) == size
            return t1 - t0

        down_s, up_s = await asyncio.gather(
            transfer(via, direct, "t/bulk-down", 200_000), transfer(direct, via, "t/bulk-up", 100_000)
        )
    assert 0.95 <= down_s <= 1.25, down_s
    assert 0.95 <= up_s <= 1.25, up_s


async def test_loss_burst_delays_by_retransmission_in_order(mosquitto: MosquittoBroker) -> None:
    """A segment sent inside a burst gets through at TCP's first retransmission after it (RTO = RTT +
    200 ms); a later segment sent after the burst waits behind it (in-order delivery)."""
    delay, burst = 0.05, (1.0, 1.3)
    clock = WarpClock()
    params = LinkParams(loss=LossBursts((burst,)))
    async with LinkRelay(("127.0.0.1", mosquitto.port), relay_plan(delay), clock, params) as relay:
        via, direct = urls(mosquitto, relay)
        subscribed = asyncio.Event()
        rx = asyncio.create_task(receive(direct, "t/burst", 3, subscribed))
        await subscribed.wait()
        async with make_client(via) as client:
            sent = []
            for t_s in (0.5, 1.1, 1.32):
                await clock.sleep_until(t_s)
                sent.append(clock.now())
                await client.publish("t/burst", f"{t_s}", qos=0)
            got = await rx
    arrived = [clock.t0_s + clock.warp * (t - clock.wall0) for t, _ in got]
    assert [p for _, p in got] == [b"0.5", b"1.1", b"1.32"]
    # the first message is not in a burst: one-way delay only
    assert arrived[0] - sent[0] == pytest.approx(delay, abs=0.02)
    # sent at 1.1 in the burst; retransmitted at 1.1 + (0.1 + 0.2) = 1.4, outside: arrives at 1.45
    assert arrived[1] == pytest.approx(sent[1] + 0.3 + delay, abs=0.03)
    # sent at 1.32 after the burst (would arrive at 1.37) but delivered in order, behind the 1.45 one
    assert arrived[2] >= arrived[1] - 0.002
    assert arrived[2] == pytest.approx(arrived[1], abs=0.02)


async def test_tcp_giving_up_in_a_long_burst_cuts_the_connection(mosquitto: MosquittoBroker) -> None:
    """With 2 retries, a segment sent at 0.3 s into a 60 s burst is given up at 0.3 + 0.2 + 0.4 + 0.8 s."""
    clock = WarpClock()
    params = LinkParams(loss=LossBursts(((0.25, 60.0),)), tcp=TcpRecovery(retries=2))
    async with LinkRelay(("127.0.0.1", mosquitto.port), relay_plan(0.0), clock, params) as relay:
        via, _ = urls(mosquitto, relay)
        async with make_client(via) as client:
            await clock.sleep_until(0.3)
            await client.publish("t/lost", b"1", qos=0)
            with pytest.raises(aiomqtt.MqttError):
                async with asyncio.timeout(5.0):
                    async for _ in client.messages:
                        pass
            cut_at = clock.now()
    assert [e.kind for e in relay.stats.events] == ["accepted", "cut_loss"]
    assert relay.stats.events[1].t_s == pytest.approx(0.3 + 1.4, abs=0.05)
    assert cut_at == pytest.approx(1.7, abs=0.2)


async def test_cut_at_los_refused_in_the_gap_reconnects_at_aos(mosquitto: MosquittoBroker) -> None:
    """Plan: contact [0, 100) s, gap, contact [200, 1000) s at warp 100 (1 s of wall time per 100 s).
    A persistent session is reset at LOS, cannot connect in the gap, reconnects at AOS and receives the
    QoS 1 message published meanwhile, once."""
    plan = ContactPlan(0.0, 1000.0, (ContactWindow("a", 0.0, 100.0), ContactWindow("b", 200.0, 1000.0)), 0.0)
    clock = WarpClock(warp=100.0)
    async with LinkRelay(("127.0.0.1", mosquitto.port), plan, clock) as relay:
        via, direct = urls(mosquitto, relay)
        sat = make_client(via, identifier="sat-1", clean_session=False)
        async with sat:
            await sat.subscribe("up/#", qos=1)
            async with make_client(direct) as ground:
                await ground.publish("up/first", b"first", qos=1)
            got = []
            with pytest.raises(aiomqtt.MqttError):
                async with asyncio.timeout(5.0):
                    async for message in sat.messages:
                        got.append(bytes(message.payload))  # type: ignore[arg-type]
        lost_at = clock.now()
        assert got == [b"first"]
        assert lost_at == pytest.approx(100.0, abs=10.0)  # within 0.1 s of wall time

        async with make_client(direct) as ground:
            await ground.publish("up/queued", b"queued", qos=1)
        await clock.sleep_until(150.0)
        with pytest.raises(aiomqtt.MqttError):
            async with make_client(via, identifier="sat-1", clean_session=False, timeout_s=0.3):
                pass

        await clock.sleep_until(200.0)
        again = make_client(via, identifier="sat-1", clean_session=False)
        async with again:
            async with make_client(direct) as ground:
                await ground.publish("up/after", b"after", qos=1)
            received = []
            async with asyncio.timeout(5.0):
                async for message in again.messages:
                    received.append(bytes(message.payload))  # type: ignore[arg-type]
                    if b"after" in received:
                        break
        assert received == [b"queued", b"after"]
    kinds = [e.kind for e in relay.stats.events]
    assert kinds.count("cut_los") == 1
    assert kinds.count("refused") >= 1
    assert kinds.count("accepted") == 2
    refused = [e.t_s for e in relay.stats.events if e.kind == "refused"]
    assert all(100.0 <= t < 200.0 for t in refused)
    assert set(relay.stats.contact_bytes) == {0, 1}


async def test_stream_integrity_backpressure_and_half_close() -> None:
    """2 MB through a 64 KiB relay buffer at 8 MB/s arrive intact and in order; the client's FIN reaches
    the server, whose reply still comes back before the relay closes the connection."""
    payload = np.random.default_rng(1).integers(0, 256, 2_000_000, dtype=np.uint8).tobytes()
    received = asyncio.get_running_loop().create_future()

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's FIN
        received.set_result(data)
        writer.write(hashlib.sha256(data).digest())
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(server, "127.0.0.1", 0)
    target = srv.sockets[0].getsockname()[:2]
    params = LinkParams(up_bytes_s=8e6, down_bytes_s=8e6)
    async with srv, LinkRelay(target, relay_plan(0.01), WarpClock(), params, buffer_bytes=64 * 1024) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        t0 = time.monotonic()
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), 10.0)
        elapsed = time.monotonic() - t0
        writer.close()
        assert await received == payload
        assert reply == hashlib.sha256(payload).digest()
        await asyncio.sleep(0.05)
    assert elapsed >= 2_000_000 / 8e6
    assert relay.stats.bytes[Direction.DOWN] == len(payload) and relay.stats.bytes[Direction.UP] == 32
    assert [e.kind for e in relay.stats.events] == ["accepted", "closed"]


async def test_held_out_of_contact_relays_from_the_acquisition_on() -> None:
    """``out_of_contact="hold"``: a connection opened in the gap is accepted locally (a terminal's PEP),
    what it sends waits, and reaches the far side at the acquisition, not before; one closed by its
    client while held is let go. Plan at warp 100: gap [0, 100) s, contact from 100 s."""
    arrived: list[tuple[float, bytes]] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1000):
            arrived.append((clock.now(), data))
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = ("127.0.0.1", server.sockets[0].getsockname()[1])
    plan = ContactPlan(0.0, 1000.0, (ContactWindow("a", 100.0, 1000.0),), 0.0)
    clock = WarpClock(warp=100.0)
    async with server, LinkRelay(target, plan, clock, out_of_contact="hold") as relay:
        quitter = await asyncio.open_connection("127.0.0.1", relay.port)
        quitter[1].write(b"never")
        await quitter[1].drain()
        quitter[1].close()  # gives up before the acquisition
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"hello ")
        await writer.drain()
        await clock.sleep_until(50.0)
        writer.write(b"satellite")
        await writer.drain()
        echoed = b""
        async with asyncio.timeout(5.0):
            while len(echoed) < len(b"hello satellite"):
                echoed += await reader.read(1000)
        writer.close()
    assert echoed == b"hello satellite"
    assert arrived and arrived[0][0] >= 100.0 and b"".join(d for _, d in arrived) == b"hello satellite"
    kinds = [e.kind for e in relay.stats.events]
    assert kinds.count("held") == 2 and kinds.count("gave_up") == 1 and kinds.count("accepted") == 1
    assert "refused" not in kinds
    assert relay.stats.contact_bytes[0] == {Direction.DOWN: 15, Direction.UP: 15}  # the client is the satellite
