"""The fleet's ground segment on a three-node nats-server cluster (MQTT listener, JetStream R3).

Satellites (real flightd processes) and ground clients connect to different nodes; every topic orbitd
uses crosses the cluster; a node killed mid-run (the one holding the satellite's connection and the
leadership of the QoS 1 message stream) loses no QoS 1 message and runs no job twice.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from pydantic import ValidationError

from ground.client import GroundClient
from hil.nats_cluster import NatsCluster, nats_server_version
from link.codec import decode
from link.messages import JobRequest, JobState, JobStateEvent, Status
from link.topics import REPLAY_ROOT, TopicMap
from link.transport import BrokerList, BrokerUrl, make_client, refused_filters
from tests.support import FlightdProcess, copy_bundled, wait_online, wait_until

DIGITS = "digits-int8"
IDENT = "Az09_-x"
"""An id with every character class a topic level may hold (link.messages.TOPIC_ID_PATTERN)."""


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One cluster for the tests that kill no node (each uses its own satellite ids): ~3 s saved each."""
    with NatsCluster(tmp_path_factory.mktemp("nats-shared")) as cluster:
        yield cluster


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return copy_bundled(tmp_path / "models", DIGITS)


def digits(n: int = 1) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)


def every_topic(topics: TopicMap, ident: str) -> tuple[list[str], list[str]]:
    """(concrete topics, subscription patterns) of every topic property and builder of TopicMap, found by
    introspection so that a topic added later is checked too; builders get ``ident`` for each id."""
    concrete: list[str] = []
    patterns: list[str] = []
    for name, member in inspect.getmembers(type(topics)):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            value = getattr(topics, name)
        elif inspect.isfunction(member) and inspect.signature(member).return_annotation == "str":
            params = [p for p in inspect.signature(member).parameters.values() if p.name != "self"]
            bound = getattr(topics, name)
            value = bound(*[ident for p in params if p.default is inspect.Parameter.empty])
        else:
            continue
        (patterns if ("+" in value or "#" in value) else concrete).append(value)
    return concrete, patterns


async def poll_status(ground: GroundClient, state: str, timeout_s: float = 10.0) -> Status:
    """The retained status, read again until it says ``state`` (retained messages reach other nodes
    best-effort) or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await ground.status()
        if status.state == state or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------------------------------ topics


async def test_every_orbitd_topic_crosses_the_cluster(shared_cluster: NatsCluster) -> None:
    """Each topic orbitd publishes, live and replay, published QoS 1 on node 1 arrives on node 2 through
    each of orbitd's subscription patterns (every SUBACK granted); retained ones reach node 3."""
    n1, n2, n3 = (BrokerUrl.parse(u) for u in shared_cluster.urls)
    live, replay = TopicMap(IDENT), TopicMap(IDENT, REPLAY_ROOT)
    concrete, patterns = every_topic(live, IDENT)
    replay_concrete, replay_patterns = every_topic(replay, IDENT)
    assert len(concrete) >= 11 and len(patterns) >= 8, (concrete, patterns)
    assert live.job_state(IDENT) in concrete and live.upload_progress_all in patterns
    topics = concrete + replay_concrete
    got: dict[str, list[str]] = {}
    async with make_client(n2, identifier="test-topics-sub") as sub:
        # A refused filter comes back as SUBACK 0x80. The topic check is the same at either QoS; the
        # patterns are subscribed at QoS 0 because each QoS 1 subscription creates an R3 JetStream
        # consumer (~0.5 s here), the two roots at QoS 1 carry every message.
        every = [(p, 0) for p in [*patterns, *replay_patterns]]
        assert refused_filters(every, await sub.subscribe(every)) == []
        roots = [f"{live.root}/#", f"{replay.root}/#"]
        granted = await sub.subscribe([(r, 1) for r in roots])
        assert [int(getattr(g, "value", g)) for g in granted] == [1, 1], granted

        async def collect() -> None:
            async for message in sub.messages:
                got.setdefault(str(message.topic), []).append(bytes(message.payload).decode())

        reader = asyncio.create_task(collect())
        async with make_client(n1, identifier="test-topics-pub") as pub:
            for topic in topics:
                await pub.publish(topic, topic.encode(), qos=1, retain=topic.endswith(("/status", "/state")))
        await wait_until(lambda: set(topics) <= set(got), 10, f"all topics on node 2; missing {set(topics) - set(got)}")
        reader.cancel()
    assert all(payloads[0] == topic for topic, payloads in got.items() if topic in topics)

    # retained on another node (best effort across nodes: give it a moment)
    retained = {t for t in topics if t.endswith(("/status", "/state"))}
    seen: set[str] = set()
    async with make_client(n3, identifier="test-topics-retained") as late:
        await late.subscribe([(f"{live.root}/#", 1), (f"{replay.root}/#", 1)])

        async def collect_retained() -> None:
            async for message in late.messages:
                if message.retain:
                    seen.add(str(message.topic))

        reader = asyncio.create_task(collect_retained())
        await wait_until(lambda: retained <= seen, 10, f"retained on node 3; missing {retained - seen}")
        reader.cancel()


async def test_a_dot_never_reaches_a_topic(shared_cluster: NatsCluster) -> None:
    """nats-server before 2.10 disconnects a publisher whose topic holds a ``.``: orbitd's ids that are
    topic levels refuse it at the edge (TopicMap, the wire models, flightd's settings)."""
    with pytest.raises(ValueError, match="invalid job id"):
        TopicMap("sat1").job_state("job.1")
    with pytest.raises(ValueError, match="invalid satellite id"):
        TopicMap("sat.1")
    with pytest.raises(ValidationError, match="job_id"):
        JobRequest(job_id="job.1", model="m", inputs={"x": {"dtype": "float32", "shape": [1], "data_b64": "AAAAAA=="}})
    JobRequest(job_id="job-1", model="digits.v2", version="1.0.0",
               inputs={"x": {"dtype": "float32", "shape": [1], "data_b64": "AAAAAA=="}})  # names, versions keep `.`
    if nats_server_version() >= (2, 10, 0):
        pytest.skip("nats-server >= 2.10 maps `.` to `//`: the refusal below is 2.9's")
    async with make_client(BrokerUrl.parse(shared_cluster.urls[0]), identifier="test-dot") as client:
        dotted = [("orbitd/v1/sat1/jobs/job.1/state", 1), ("orbitd/v1/sat1/jobs/job-1/state", 1)]
        assert refused_filters(dotted, await client.subscribe(dotted)) == ["orbitd/v1/sat1/jobs/job.1/state"]
        with pytest.raises(aiomqtt.MqttError):
            await client.publish("orbitd/v1/sat1/jobs/job.1/state", b"x", qos=1, timeout=2)
    assert "not supported for MQTT topics" in shared_cluster.nodes[0].log()


# -------------------------------------------------------------------------------- across the nodes


async def test_jobs_results_and_status_flow_across_nodes(
    shared_cluster: NatsCluster, tmp_path: Path, models_dir: Path
) -> None:
    """Two satellites on nodes 2 and 3, the ground on node 1: jobs go out, results and retained status
    come back across the cluster; a late ground client on another node reads the retained state; a
    graceful stop's ``offline`` status reaches the other nodes."""
    n1, n2, n3 = shared_cluster.urls
    sats = {"sat-a": n2, "sat-b": n3}
    procs = [FlightdProcess(url, tmp_path / f"data-{sat}", models_dir, sat=sat) for sat, url in sats.items()]
    for p in procs:
        p.start()
    try:
        for sat in sats:
            await wait_online(n1, sat)
        x = digits(2)
        for sat in sats:
            async with GroundClient(n1, sat) as ground:
                job = await ground.submit(DIGITS, {"image": x})
                fetched = await ground.wait_result(job.job_id, timeout_s=30, ack=False)
                assert fetched.outputs["logits"].shape == (2, 10) and fetched.result.job_id == job.job_id
                info = await ground.job(job.job_id)
                assert info["state"] == "done" and info["completions"] == 1
            # another node: the retained status and the job's retained state and result
            other = n3 if sats[sat] == n2 else n2
            async with GroundClient(other, sat) as late:
                status = await late.status()
                assert status.state == "online" and status.sat == sat and f"{DIGITS}/1.0.0" in status.models
                again = await late.wait_result(job.job_id, timeout_s=10)  # retained, then acknowledged
                np.testing.assert_array_equal(again.outputs["logits"], fetched.outputs["logits"])
                events = await late.watch_topic(late.topics.job_state(job.job_id))
                _, payload = await asyncio.wait_for(events.get(), 10)
                assert decode(payload, JobStateEvent).message.state is JobState.DONE
        # a graceful stop publishes the retained ``offline`` on sat-a's node; the ground sees it on node 1
        assert procs[0].terminate() == 0
        async with GroundClient(n1, "sat-a") as ground:
            offline = await poll_status(ground, "offline")
        assert offline.state == "offline"
    finally:
        for p in procs:
            p.stop()
    for p in procs:
        assert "Traceback" not in p.log(), p.log()[-3000:]


# ---------------------------------------------------------------------------------- node killed


async def test_node_killed_mid_run_loses_no_qos1_message(nats_cluster: NatsCluster) -> None:
    """A persistent-session subscriber on the node that leads the QoS 1 message stream; a publisher on
    another node sends 150 numbered QoS 1 messages, resending any without a PUBACK; the subscriber's node
    is killed after 50. The subscriber reconnects to the next node of its list and gets all 150."""
    assert len(nats_cluster.stream_cluster("$MQTT_msgs")["replicas"]) == 2  # R3: the leader and two
    leader = nats_cluster.leader("$MQTT_msgs")
    order = [leader, (leader + 1) % 3, (leader + 2) % 3]
    sub_nodes = BrokerList.parse(",".join(nats_cluster.urls[i] for i in order))
    pub_url = BrokerUrl.parse(nats_cluster.urls[order[2]])
    got: list[int] = []
    subscribed = asyncio.Event()
    reconnected_to: list[str] = []

    async def subscriber() -> None:
        attempt = 0
        while True:
            url = sub_nodes.node(attempt)
            try:
                async with make_client(url, identifier="test-kill-sub", clean_session=False) as client:
                    await client.subscribe("fleet/seq", qos=1)
                    reconnected_to.append(str(url))
                    subscribed.set()
                    async for message in client.messages:
                        got.append(int(bytes(message.payload)))
            except aiomqtt.MqttError:
                attempt += 1
                await asyncio.sleep(0.1)

    reader = asyncio.create_task(subscriber())
    await asyncio.wait_for(subscribed.wait(), 15)
    sent, killed_at = 0, time.monotonic()
    while sent < 150:
        try:
            async with make_client(pub_url, identifier="test-kill-pub") as pub:
                while sent < 150:
                    if sent == 50 and nats_cluster.nodes[leader].alive():
                        nats_cluster.kill(leader)
                        killed_at = time.monotonic()
                    await pub.publish("fleet/seq", str(sent).encode(), qos=1, timeout=5)
                    sent += 1
                    await asyncio.sleep(0.005)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)  # no PUBACK: the message is still ours, sent again on a new connection
    await wait_until(lambda: set(got) >= set(range(150)), 30, "all 150 QoS 1 messages after the kill")
    reader.cancel()
    assert not nats_cluster.nodes[leader].alive()
    assert len(reconnected_to) >= 2 and reconnected_to[-1] != str(sub_nodes.node(0)), reconnected_to
    assert time.monotonic() - killed_at < 30


async def test_satellite_node_killed_mid_run_every_job_done_once(
    nats_cluster: NatsCluster, tmp_path: Path, models_dir: Path
) -> None:
    """flightd connected to the node that leads the QoS 1 stream, the ground on another node submitting a
    stream of jobs; the satellite's node is killed mid-run. flightd fails over to the next node of its
    list with its session; every job is acknowledged, run exactly once, and its result reaches the ground."""
    leader = nats_cluster.leader("$MQTT_msgs")
    ground_node = (leader + 1) % 3
    flightd_brokers = ",".join(nats_cluster.urls[(leader + k) % 3] for k in range(3))
    flightd = FlightdProcess(flightd_brokers, tmp_path / "data", models_dir, sat="sat-k")
    flightd.start()
    ground_url = nats_cluster.urls[ground_node]
    try:
        await wait_online(ground_url, "sat-k")
        x = digits()
        results: dict[str, np.ndarray] = {}
        async with GroundClient(ground_url, "sat-k", timeout_s=60) as ground:
            await ground.track_all_jobs()
            waits = []
            for i in range(16):
                if i == 5:
                    nats_cluster.kill(leader)
                # The failover budget (12 attempts of 10 s) covers the JetStream elections and flightd's
                # session restore on the next node: the first job after the kill was acknowledged 24 s
                # after it on a loaded 2-core machine here, and not within 6 attempts of 5 s once in CI.
                job = await ground.submit(DIGITS, {"image": x}, job_id=f"kill-{i:02d}", ack_timeout_s=10, attempts=12)
                waits.append(asyncio.create_task(ground.wait_result(job.job_id, timeout_s=120, ack=False)))
            for done in await asyncio.gather(*waits):
                results[done.result.job_id] = done.outputs["logits"]
            # acknowledged once the cluster is whole again (a command in flight across a failover may
            # lose its reply: the ground's clean session does not outlive its connection)
            jobs = {j["job_id"]: j for j in await ground.jobs()}
            for job_id in results:
                assert (await ground.ack(job_id))["acked"]
            status = await ground.status()
        assert sorted(results) == [f"kill-{i:02d}" for i in range(16)]
        assert all(np.array_equal(v, results["kill-00"]) for v in results.values())
        assert all(jobs[j]["completions"] == 1 and jobs[j]["attempt"] == 1 for j in results), jobs
        assert status.state == "online"
    finally:
        flightd.stop()
    log = flightd.log()
    assert re.search(r"link to mqtt://127\.0\.0\.1:\d+ lost or refused", log), log[-3000:]
    assert log.count("connected to mqtt://") >= 2, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_cluster_config_and_restart(tmp_path: Path) -> None:
    """Each node's config names it, routes to the two others, keeps JetStream in its own directory and
    replicates the MQTT streams 3 ways; a killed node restarts with its store and accepts MQTT again."""
    cluster = NatsCluster(tmp_path / "nats")
    cluster.write_configs()
    for node in cluster.nodes:
        text = node.config_path.read_text()
        assert f'server_name: "{node.name}"' in text and str(node.store_dir) in text
        assert "stream_replicas: 3" in text and f'listen: "127.0.0.1:{node.mqtt_port}"' in text
        others = [o for o in cluster.nodes if o is not node]
        assert all(o.route in text for o in others) and node.route not in text
    with cluster:
        assert cluster.ready_s is not None and cluster.ready_s < 30
        cluster.kill(1)
        assert not cluster.nodes[1].alive()
        cluster.restart(1)
        assert cluster.nodes[1].alive()
        assert any(cluster.nodes[1].store_dir.rglob("*.blk"))
    assert not any(n.alive() for n in cluster.nodes)
    with pytest.raises(ValueError, match="replicas"):
        NatsCluster(tmp_path / "x", size=3, replicas=4)
