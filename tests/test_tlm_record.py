"""ground tlm record: a recorder process killed with SIGKILL leaves an archive that opens and holds
every message it committed, byte for byte, in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ground.tlm.archive import Archive, classify
from ground.tlm.recorder import Recorder, header_only
from hil.mosquitto_broker import MosquittoBroker
from link.codec import encode, pack_tensors
from link.messages import Event, EventKind, JobResult, JobState, JobStateEvent, Status, Telemetry
from link.topics import TopicMap

REPO = Path(__file__).resolve().parent.parent
SAT = "sat-a"


def start_recorder(broker: MosquittoBroker, archive: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ground.tlm.cli", "--broker", broker.url, "--sat", SAT,
         "tlm", "record", "--out", str(archive), *extra],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("recording"), line
    return proc


def publisher(broker: MosquittoBroker) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def mixed_messages(n: int, sat: str = SAT) -> list[tuple[str, bytes, float | None, float | None]]:
    """(topic, payload, expected t_s, expected msg_utc): telemetry on 3 channels, status, events,
    job states and framed results with tensors."""
    tm = TopicMap(sat)
    out: list[tuple[str, bytes, float | None, float | None]] = []
    for i in range(n):
        kind = i % 6
        at = 1_750_000_000.0 + i
        if kind < 3:
            ch = ("power", "thermal", "compute")[kind]
            msg = Telemetry(sat=sat, channel=ch, t_s=i * 0.5, at_utc=at, values={"x": float(i), "y": -i / 3})
            out.append((tm.telemetry(ch), encode(msg), i * 0.5, at))
        elif kind == 3:
            out.append((tm.status, encode(Status(sat=sat, state="online", at_utc=at, queue_depth=i)), None, at))
        elif kind == 4:
            ev = Event(kind=EventKind.MODE, message=f"e{i}", at_utc=at, t_s=i * 0.5)
            out.append((tm.events, encode(ev), i * 0.5, at))
        elif i % 12 == 5:
            js = JobStateEvent(job_id=f"j{i}", state=JobState.DONE, at_utc=at)
            out.append((tm.job_state(f"j{i}"), encode(js), None, at))
        else:
            tensors, binary = pack_tensors({"y": np.arange(i, dtype=np.float32)})
            res = JobResult(job_id=f"j{i}", model="m", version="1", outputs=tensors, started_utc=at - 1,
                            finished_utc=at, run_ms=3.0, provider="CPUExecutionProvider")  # fmt: skip
            out.append((tm.result(f"j{i}"), encode(res, binary), None, at))
    return out


def wait_count(archive: Path, n: int, timeout_s: float = 15.0) -> int:
    deadline = time.monotonic() + timeout_s
    count = -1
    while time.monotonic() < deadline:
        if archive.exists():
            with Archive(archive) as a:
                count = a.count()
            if count >= n:
                return count
        time.sleep(0.02)
    return count


def test_kill_9_keeps_every_committed_message(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    proc = start_recorder(mosquitto, path)
    messages = mixed_messages(600)
    client = publisher(mosquitto)
    try:
        # noise the recorder must not keep: another satellite, a command, a job submission
        other = TopicMap("sat-b")
        client.publish(other.telemetry("power"), b"{}", qos=1)
        client.publish(TopicMap(SAT).command, b"{}", qos=1)
        client.publish(TopicMap(SAT).job_submit, b"{}", qos=1)
        for topic, payload, _, _ in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
        assert wait_count(path, len(messages)) == len(messages)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        client.loop_stop()
        client.disconnect()
    assert proc.returncode == -signal.SIGKILL
    with Archive(path) as archive:
        assert archive.integrity_ok()
        records = list(archive.messages())
    assert len(records) == len(messages)
    for rec, (topic, payload, t_s, msg_utc) in zip(records, messages, strict=True):
        assert rec.topic == topic
        assert rec.payload == payload
        assert rec.sat == SAT
        assert rec.t_s == t_s
        assert rec.msg_utc == msg_utc
        parsed = classify(topic)
        assert parsed is not None and rec.channel == parsed.channel
    assert [r.rx_utc for r in records] == sorted(r.rx_utc for r in records)
    counts = {ch: sum(1 for r in records if r.channel == ch) for ch in {r.channel for r in records}}
    assert counts == {"tlm/power": 100, "tlm/thermal": 100, "tlm/compute": 100, "status": 100,
                      "events": 100, "jobs": 50, "results": 50}  # fmt: skip


def test_kill_9_mid_stream_leaves_a_clean_prefix(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """Kill the recorder while messages keep arriving: what is there is an unbroken prefix of what
    was published, at least as long as what had been committed before the kill."""
    path = tmp_path / "a.db"
    proc = start_recorder(mosquitto, path)
    tm = TopicMap(SAT)
    payloads = [
        encode(Telemetry(sat=SAT, channel="power", t_s=float(i), values={"i": float(i)})) for i in range(20_000)
    ]
    client = publisher(mosquitto)
    stop = threading.Event()

    def pump() -> None:
        for p in payloads:
            if stop.is_set():
                return
            client.publish(tm.telemetry("power"), p, qos=0)
            time.sleep(0.0001)

    thread = threading.Thread(target=pump)
    thread.start()
    try:
        committed = wait_count(path, 2000)
        assert committed >= 2000
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
        thread.join()
        client.loop_stop()
        client.disconnect()
    with Archive(path) as archive:
        assert archive.integrity_ok()
        got = [r.payload for r in archive.messages(["power"])]
    assert len(got) >= committed
    assert got == payloads[: len(got)]


@pytest.mark.parametrize("policy", ["full", "header", "none"])
def test_results_policy(tmp_path: Path, policy: str) -> None:
    """--results full keeps the framed bytes, header keeps the JSON header only (flagged truncated),
    none drops results."""
    ((topic, payload, _, at),) = [m for m in mixed_messages(12) if "/results/" in m[0]][:1]
    with Archive(tmp_path / "a.db", writable=True) as archive:
        rec = Recorder(archive, results=policy)  # type: ignore[arg-type]
        rec.add(topic, payload, qos=1)
        rec.flush()
        got = list(archive.messages(["results"]))
    if policy == "none":
        assert got == []
        return
    (r,) = got
    assert r.msg_utc == at
    if policy == "full":
        assert r.payload == payload and not r.truncated
    else:
        header_len = int.from_bytes(payload[4:8], "little")
        assert r.payload == payload[8 : 8 + header_len] == header_only(payload)
        assert r.truncated


def test_commit_policy_100_messages_or_200_ms(tmp_path: Path) -> None:
    """A batch is committed at 100 messages, or once its oldest message has waited 0.2 s."""
    path = tmp_path / "a.db"
    topic = TopicMap(SAT).telemetry("power")
    payload = encode(Telemetry(sat=SAT, channel="power", t_s=0.0, values={}))
    with Archive(path, writable=True) as archive, Archive(path) as reader:
        rec = Recorder(archive)
        for _ in range(99):
            rec.add(topic, payload)
        assert reader.count() == 0 and not rec.due()
        rec.add(topic, payload)
        assert reader.count() == 100
        rec.add(topic, payload)
        assert not rec.due()
        time.sleep(0.21)
        assert rec.due()
        rec.flush()
        assert reader.count() == 101 and rec.batches == 2


async def test_recorder_survives_a_broker_restart(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """The library recorder reconnects after the broker restarts and keeps recording."""
    import asyncio

    from ground.tlm.recorder import record

    path = tmp_path / "a.db"
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(record(path, mosquitto.url, sat=SAT, stop=stop, on_ready=lambda r: ready.set()))
    await asyncio.wait_for(ready.wait(), 10)
    msgs = mixed_messages(60)

    def publish(batch: list[tuple[str, bytes, float | None, float | None]], retain: bool = False) -> None:
        client = publisher(mosquitto)
        for topic, payload, _, _ in batch:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()

    await asyncio.to_thread(publish, msgs[:30])
    assert await asyncio.to_thread(wait_count, path, 30) == 30
    mosquitto.stop()
    mosquitto.start()
    # a retained message reaches the recorder once it has resubscribed: no guessing how long that takes
    marker = (TopicMap(SAT).status, encode(Status(sat=SAT, state="online", at_utc=1.0)), None, 1.0)
    await asyncio.to_thread(publish, [marker], True)
    assert await asyncio.to_thread(wait_count, path, 31) == 31
    await asyncio.to_thread(publish, msgs[30:])
    assert await asyncio.to_thread(wait_count, path, 61) == 61
    stop.set()
    recorder = await asyncio.wait_for(task, 10)
    assert recorder.written == 61
    with Archive(path) as archive:
        records = list(archive.messages())
    assert [r.payload for r in records] == [m[1] for m in msgs[:30]] + [marker[1]] + [m[1] for m in msgs[30:]]
