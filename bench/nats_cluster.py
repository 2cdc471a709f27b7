"""The fleet's ground broker: a three-node nats-server cluster against one Mosquitto, on loopback.

    python -m bench.nats_cluster --json [--starts 3] [--messages 200]

- ``start_s``: from starting three fresh nodes to every node accepting MQTT (median of ``--starts``), the
  fixed cost of a test that needs a cluster; ``restart_node_s``: one killed node back with its store;
  ``mosquitto_start_s``: one Mosquitto until it listens, for comparison.
- ``qos1_ms_*``: one-way latency (p50, p99) of QoS 1 messages published on node 1 and received on node 1
  (same node) or node 2 (across the cluster), and through Mosquitto, same machine clock.
- ``subscribe_qos1_ms`` / ``subscribe_qos0_ms``: one SUBSCRIBE of one filter; on the cluster each QoS 1
  subscription is an R3 JetStream consumer, the reason a ground client subscribes with wildcards once.
- ``failover_s``: a persistent-session subscriber on the node leading the QoS 1 stream, a publisher on
  another node sending every 20 ms; the subscriber's node is killed: seconds from the kill until the
  subscriber, reconnected to the next node, receives a message published after the kill, and
  ``failover_lost``: messages never received (0 expected).

Prints the CPU it ran on; quote ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.harness import cpu_info
from hil.mosquitto_broker import MosquittoBroker
from hil.nats_cluster import NatsCluster, nats_server_version
from link.transport import BrokerList, BrokerUrl, make_client


def _ms_quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": round(ordered[len(ordered) // 2] * 1e3, 3),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 3)}


async def one_way_latency(pub_url: str, sub_url: str, n: int, tag: str) -> dict[str, float]:
    """p50/p99 ms from publish to receipt of ``n`` QoS 1 messages, one at a time."""
    topic = f"bench/latency/{tag}"
    async with make_client(BrokerUrl.parse(sub_url), identifier=f"bench-sub-{tag}") as sub, \
            make_client(BrokerUrl.parse(pub_url), identifier=f"bench-pub-{tag}") as pub:
        await sub.subscribe(topic, qos=1)
        samples: list[float] = []
        messages = sub.messages
        for i in range(n):
            t0 = time.perf_counter()
            await pub.publish(topic, str(i).encode(), qos=1)
            while True:
                message = await asyncio.wait_for(anext(messages), 10)
                if bytes(message.payload) == str(i).encode():
                    break
            samples.append(time.perf_counter() - t0)
    return _ms_quantiles(samples)


async def subscribe_ms(url: str, qos: int, n: int = 5) -> float:
    """Median ms of one SUBSCRIBE of one new filter at ``qos``."""
    async with make_client(BrokerUrl.parse(url), identifier=f"bench-subscribe-{qos}") as client:
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            await client.subscribe(f"bench/subscribe/{qos}/{i}", qos=qos)
            samples.append(time.perf_counter() - t0)
    return round(statistics.median(samples) * 1e3, 1)


async def failover(cluster: NatsCluster) -> dict[str, Any]:
    """Kill the node of a persistent subscriber (the QoS 1 stream's leader); time to the first message
    published after the kill, and messages lost."""
    leader = cluster.leader("$MQTT_msgs")
    nodes = BrokerList.parse(",".join(cluster.urls[(leader + k) % 3] for k in range(3)))
    pub_url = BrokerUrl.parse(cluster.urls[(leader + 2) % 3])
    received: dict[int, float] = {}
    ready = asyncio.Event()

    async def subscriber() -> None:
        attempt = 0
        while True:
            try:
                async with make_client(nodes.node(attempt), identifier="bench-failover", clean_session=False) as c:
                    await c.subscribe("bench/failover", qos=1)
                    ready.set()
                    async for message in c.messages:
                        received.setdefault(int(bytes(message.payload)), time.monotonic())
            except aiomqtt.MqttError:
                attempt += 1
                await asyncio.sleep(0.1)

    task = asyncio.create_task(subscriber())
    await asyncio.wait_for(ready.wait(), 30)
    sent, kill_at, first_after = 0, 0.0, -1
    while sent < 300:
        try:
            async with make_client(pub_url, identifier="bench-failover-pub") as pub:
                while sent < 300:
                    if sent == 50 and not kill_at:
                        cluster.kill(leader)
                        kill_at, first_after = time.monotonic(), sent
                    await pub.publish("bench/failover", str(sent).encode(), qos=1, timeout=5)
                    sent += 1
                    await asyncio.sleep(0.02)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)
    deadline = time.monotonic() + 60
    while len(received) < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    task.cancel()
    after = [t for i, t in received.items() if i >= first_after]
    return {"failover_s": round(min(after) - kill_at, 2) if after else None,
            "failover_lost": sent - len(set(received) & set(range(sent)))}


def measure(starts: int, messages: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="orbitd-bench-nats-") as tmp:
        start_s, restart_s = [], 0.0
        for k in range(starts):
            cluster = NatsCluster(Path(tmp) / f"start{k}")
            cluster.start()
            assert cluster.ready_s is not None
            start_s.append(cluster.ready_s)
            if k < starts - 1:
                cluster.stop()
        try:
            t0 = time.monotonic()
            cluster.kill(2)
            cluster.restart(2)
            restart_s = time.monotonic() - t0
            n1, n2 = cluster.urls[:2]
            same = asyncio.run(one_way_latency(n1, n1, messages, "same"))
            cross = asyncio.run(one_way_latency(n1, n2, messages, "cross"))
            sub1 = asyncio.run(subscribe_ms(n2, 1))
            sub0 = asyncio.run(subscribe_ms(n2, 0))
            fail = asyncio.run(failover(cluster))
        finally:
            cluster.stop()
        mosquitto = MosquittoBroker(Path(tmp) / "mosquitto")
        t0 = time.monotonic()
        with mosquitto:
            mosquitto_start_s = time.monotonic() - t0
            mosq = asyncio.run(one_way_latency(mosquitto.url, mosquitto.url, messages, "mosquitto"))
    return {
        "cpu": cpu_info(),
        "nats_server": ".".join(map(str, nats_server_version())),
        "start_s": round(statistics.median(start_s), 2),
        "start_s_all": [round(s, 2) for s in start_s],
        "restart_node_s": round(restart_s, 2),
        "mosquitto_start_s": round(mosquitto_start_s, 3),
        "qos1_ms_same_node": same,
        "qos1_ms_cross_node": cross,
        "qos1_ms_mosquitto": mosq,
        "subscribe_qos1_ms": sub1,
        "subscribe_qos0_ms": sub0,
        **fail,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nats_cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.starts, args.messages)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
