"""flight.puback: QoS 1 publishes followed to their PUBACK without a task each, on a real Mosquitto."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from flight.puback import PUBACK_TIMEOUT_S, PubackTracker
from hil.mosquitto_broker import MosquittoBroker
from link.transport import BrokerUrl, make_client


async def test_acknowledged_in_order_and_drained(mosquitto: MosquittoBroker) -> None:
    url = BrokerUrl.parse(mosquitto.url)
    tracker = PubackTracker()
    done: list[tuple[int, bool]] = []
    async with make_client(url, identifier="puback-sub") as sub, make_client(url, identifier="puback-pub") as pub:
        await sub.subscribe("puback/test", qos=1)
        for i in range(50):
            tracker.publish(pub, "puback/test", str(i).encode(), False, lambda ok, i=i: done.append((i, ok)))
        assert len(tracker) > 0  # nothing is acknowledged before the loop runs
        assert await tracker.drain(10.0)
        received = []
        async for message in sub.messages:
            received.append(int(bytes(message.payload)))  # type: ignore[arg-type]
            if len(received) == 50:
                break
    assert sorted(done) == [(i, True) for i in range(50)]
    assert received == list(range(50))  # the order of calls is the order on the wire
    assert len(tracker) == 0


async def test_unacknowledged_publish_expires_once(mosquitto: MosquittoBroker) -> None:
    url = BrokerUrl.parse(mosquitto.url)
    tracker = PubackTracker()
    done: list[bool] = []
    async with make_client(url, identifier="puback-pub") as pub:
        assert mosquitto.proc is not None
        os.kill(mosquitto.proc.pid, signal.SIGSTOP)  # the broker hears nothing and acknowledges nothing
        try:
            tracker.publish(pub, "puback/test", b"x", False, done.append)
            await asyncio.sleep(0.2)
            assert done == [] and len(tracker) == 1
            assert tracker.expire(time.monotonic()) == 0  # not yet due
            assert tracker.expire(time.monotonic() + PUBACK_TIMEOUT_S + 1) == 1
            assert done == [False]
            assert not pub._pending_publishes  # its message id is free for reuse
            assert await tracker.drain(0.1)
        finally:
            os.kill(mosquitto.proc.pid, signal.SIGCONT)
        await asyncio.sleep(0.5)  # the late PUBACK, if any, settles nothing twice
    assert done == [False]
