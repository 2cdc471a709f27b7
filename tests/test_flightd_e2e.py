"""End to end: ground client -> real broker -> flightd (a real process) -> ONNX Runtime -> result."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import numpy as np
import onnxruntime as ort
import pytest

from ground.client import GroundClient, GroundError, JobRejected
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode, encode
from link.messages import Event, JobRequest, JobState, JobStateEvent
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from tests.support import REPO, FlightdProcess, build_slow_model, copy_bundled, wait_online, wait_until

DIGITS = "digits-int8"


def digits_sample(n: int = 1) -> np.ndarray:
    from sklearn.datasets import load_digits

    images = load_digits().images[:n].astype(np.float32) / 16.0
    return images.reshape(n, 1, 8, 8)


def reference_logits(x: np.ndarray) -> np.ndarray:
    """The same model run directly with ONNX Runtime, outside flightd."""
    session = ort.InferenceSession(str(REPO / "models" / DIGITS / "1.0.0" / "model.onnx"))
    return np.asarray(session.run(None, {"image": x})[0])


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    d = copy_bundled(tmp_path / "models", "digits-int8", "multi-input", "uint8-mean")
    build_slow_model(d)
    return d


def journal_rows(data_dir: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(data_dir / "journal.sqlite3") as db:
        return {r[0]: (r[1], r[2]) for r in db.execute("SELECT job_id, state, completions FROM jobs")}


async def test_submit_result_matches_direct_onnxruntime(mosquitto: MosquittoBroker, flightd: FlightdProcess) -> None:
    x = digits_sample(4)
    async with GroundClient(mosquitto.url, "sat1") as ground:
        for framed in (True, False):
            job = await ground.submit(DIGITS, {"image": x}, framed=framed)
            assert job.ack.state is JobState.QUEUED
            fetched = await ground.wait_result(job.job_id)
            np.testing.assert_allclose(fetched.outputs["logits"], reference_logits(x), rtol=1e-5, atol=1e-5)
            assert fetched.result.provider == "CPUExecutionProvider"
            info = await ground.job(job.job_id)
            assert info["state"] == "done" and info["completions"] == 1
        status = await ground.status()
        assert status.state == "online" and f"{DIGITS}/1.0.0" in status.models
        assert "CPUExecutionProvider" in status.providers


async def test_several_inputs_and_dtypes(mosquitto: MosquittoBroker, flightd: FlightdProcess) -> None:
    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    b = np.arange(6, dtype=np.int64).reshape(2, 3) * 10
    async with GroundClient(mosquitto.url, "sat1") as ground:
        job = await ground.submit("multi-input", {"a": a, "b": b})
        out = (await ground.wait_result(job.job_id)).outputs
        np.testing.assert_allclose(next(iter(out.values())), a.astype(np.float32) + b.astype(np.float32))
        image = np.arange(2 * 16, dtype=np.uint8).reshape(2, 16)
        manifest = json.loads((REPO / "models/uint8-mean/1.0.0/manifest.json").read_text())
        name = manifest["inputs"][0]["name"]
        image = np.zeros([d if isinstance(d, int) else 2 for d in manifest["inputs"][0]["shape"]], dtype=np.uint8)
        image.flat[:] = np.arange(image.size) % 251
        job = await ground.submit("uint8-mean", {name: image})
        assert (await ground.wait_result(job.job_id)).result.outputs


async def test_idempotent_job_id_runs_once(mosquitto: MosquittoBroker, flightd: FlightdProcess) -> None:
    x = digits_sample(1)
    async with GroundClient(mosquitto.url, "sat1") as ground:
        first = await ground.submit(DIGITS, {"image": x}, job_id="same-id-1")
        await ground.wait_result(first.job_id, ack=False)
        again = await ground.submit(DIGITS, {"image": x}, job_id="same-id-1")
        assert again.ack.state is JobState.DONE  # the journaled state, not a new run
        info = await ground.job("same-id-1")
    assert info["completions"] == 1 and info["attempt"] == 1


async def collect_events(url: str, topic: str, into: list[tuple[str, bytes]], ready: asyncio.Event) -> None:
    async with make_client(BrokerUrl.parse(url)) as client:
        await client.subscribe(topic, qos=1)
        ready.set()
        async for m in client.messages:
            into.append((str(m.topic), bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b""))


async def test_bad_input_is_rejected_and_nothing_queued_is_lost(
    mosquitto: MosquittoBroker, flightd: FlightdProcess
) -> None:
    topics = TopicMap("sat1")
    seen: list[tuple[str, bytes]] = []
    ready = asyncio.Event()
    collector = asyncio.create_task(collect_events(mosquitto.url, f"{topics.base}/#", seen, ready))
    await ready.wait()
    slow = np.random.default_rng(1).standard_normal((1, 64, 64, 64)).astype(np.float32)
    async with GroundClient(mosquitto.url, "sat1") as ground:
        queued = [await ground.submit("slow", {"x": slow}) for _ in range(4)]
        x = digits_sample(1)
        cases = {
            "unknown model": dict(model="no-such-model", inputs={"image": x}),
            "wrong dtype": dict(model=DIGITS, inputs={"image": x.astype(np.float64)}),
            "wrong shape": dict(model=DIGITS, inputs={"image": x.reshape(1, 1, 4, 16)}),
            "missing input": dict(model=DIGITS, inputs={"other": x}),
        }
        expected = {
            "unknown model": "unknown model 'no-such-model'",
            "wrong dtype": "must be float32, got float64",
            "wrong shape": "axis 2 must be 8",
            "missing input": "missing input(s) image",
        }
        for case, kwargs in cases.items():
            with pytest.raises(JobRejected) as info:
                await ground.submit(job_id=f"bad-{case.replace(' ', '-')}", **kwargs)  # type: ignore[arg-type]
            assert expected[case] in str(info.value), case

        raw = {
            "malformed JSON": b'{"schema_version": 1, "job_id": "bad-json", ',
            "unknown field": json.dumps({"schema_version": 1, "job_id": "bad-field", "model": DIGITS,
                                         "inputs": {}, "colour": "red"}).encode(),
            "schema version": json.dumps({"schema_version": 7, "job_id": "bad-version", "model": DIGITS,
                                          "inputs": {}}).encode(),
            "oversized": json.dumps({"schema_version": 1, "job_id": "bad-size", "model": DIGITS,
                                     "inputs": {}, "pad": "x" * (9 * 1024 * 1024)}).encode(),
            "not json": bytes(range(256)),
        }
        async with make_client(BrokerUrl.parse(mosquitto.url)) as pub:
            for payload in raw.values():
                await pub.publish(topics.job_submit, payload, qos=1)

        def rejections() -> dict[str, str]:
            out = {}
            for topic, payload in seen:
                if topic.endswith("/state") and payload:
                    ev = decode(payload, JobStateEvent).message
                    if ev.state is JobState.REJECTED:
                        out[ev.job_id] = ev.reason or ""
            return out

        def rejected_events() -> list[Event]:
            return [decode(p, Event).message for t, p in seen if t == topics.events and b'"rejected"' in p]

        await wait_until(lambda: len(rejected_events()) >= len(cases) + len(raw), 20, "rejection events")
        got = rejections()
        assert "unsupported schema_version 7" in got["bad-version"]
        assert "colour: Extra inputs are not permitted" in got["bad-field"]
        assert "exceeds the 8388608-byte limit" in got["bad-size"]
        messages = " | ".join(e.message for e in rejected_events())
        assert "malformed JSON" in messages and "neither framed (ORB1) nor UTF-8 JSON" in messages
        # The daemon is alive and every job queued before the bad input completes.
        for job in queued:
            await ground.wait_result(job.job_id, timeout_s=60)
        assert flightd.alive()
    collector.cancel()
    log = flightd.log()
    assert "rejected job bad-version" in log and "rejected job <unreadable id>" in log


async def test_raw_mosquitto_pub_job_as_documented(
    mosquitto: MosquittoBroker, flightd: FlightdProcess, tmp_path: Path
) -> None:
    """docs/icd.md: a job written by hand as JSON, sent with mosquitto_pub, runs."""
    import base64

    x = digits_sample(1)
    job = {
        "schema_version": 1,
        "job_id": "hand-written-1",
        "model": DIGITS,
        "inputs": {"image": {"dtype": "float32", "shape": [1, 1, 8, 8],
                             "data_b64": base64.b64encode(x.astype("<f4").tobytes()).decode()}},
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    async with GroundClient(mosquitto.url, "sat1") as ground:
        waiter = asyncio.create_task(ground.wait_result("hand-written-1", timeout_s=30))
        await asyncio.sleep(0.2)
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-q", "1",
             "-t", "orbitd/v1/sat1/jobs/submit", "-f", str(path)],
            check=True,
        )
        fetched = await waiter
    np.testing.assert_allclose(fetched.outputs["logits"], reference_logits(x), rtol=1e-5, atol=1e-5)


async def test_kill9_with_at_least_20_queued_then_restart_completes_each_once(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path
) -> None:
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir)
    proc.start()
    try:
        await wait_online(mosquitto.url)
        x = np.random.default_rng(2).standard_normal((1, 64, 64, 64)).astype(np.float32)
        async with GroundClient(mosquitto.url, "sat1") as ground:
            acks = await asyncio.gather(*(ground.submit("slow", {"x": x}, job_id=f"k9-{i:02d}") for i in range(30)))
            ids = [a.job_id for a in acks]
        rows = journal_rows(proc.data_dir)
        queued_at_kill = sum(1 for state, _ in rows.values() if state == "queued")
        proc.kill9()
        assert queued_at_kill >= 20, rows
        assert set(ids) <= set(rows), "every acknowledged job was journaled"
        proc.start()
        async with GroundClient(mosquitto.url, "sat1") as ground:
            results = await asyncio.gather(*(ground.wait_result(i, timeout_s=120) for i in ids))
        assert len(results) == 30
        rows = journal_rows(proc.data_dir)
        assert all(rows[i] == ("done", 1) for i in ids), rows
        assert proc.terminate() == 0
    finally:
        proc.stop()


async def test_broker_restart_mid_run(mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path) -> None:
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir)
    proc.start()
    try:
        await wait_online(mosquitto.url)
        x = np.random.default_rng(3).standard_normal((1, 64, 64, 64)).astype(np.float32)
        async with GroundClient(mosquitto.url, "sat1") as ground:
            ids = [(await ground.submit("slow", {"x": x})).job_id for _ in range(12)]
        mosquitto.stop()
        await asyncio.sleep(1.5)
        mosquitto.start()
        await wait_online(mosquitto.url)
        async with GroundClient(mosquitto.url, "sat1") as ground:
            await asyncio.gather(*(ground.wait_result(i, timeout_s=120) for i in ids))
            # and it still takes new work after the reconnect
            job = await ground.submit(DIGITS, {"image": digits_sample(1)})
            await ground.wait_result(job.job_id)
        assert "link to" in proc.log() and "retrying" in proc.log()
        assert all(rows == ("done", 1) for rows in journal_rows(proc.data_dir).values())
    finally:
        proc.stop()


async def test_sigterm_requeues_or_finishes_running_job_and_exits_0(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path
) -> None:
    config = tmp_path / "flightd.toml"
    config.write_text("shutdown_grace_s = 0.0\n")
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir, config=config)
    proc.start()
    try:
        await wait_online(mosquitto.url)
        x = np.random.default_rng(4).standard_normal((1, 64, 64, 64)).astype(np.float32)
        async with GroundClient(mosquitto.url, "sat1") as ground:
            ids = [(await ground.submit("slow", {"x": x})).job_id for _ in range(5)]
        assert proc.terminate() == 0
        rows = journal_rows(proc.data_dir)
        assert all(rows[i][0] in ("queued", "done") for i in ids), rows
        assert "stopping: draining" in proc.log()
        proc.start()
        async with GroundClient(mosquitto.url, "sat1") as ground:
            await asyncio.gather(*(ground.wait_result(i, timeout_s=60) for i in ids))
        assert all(journal_rows(proc.data_dir)[i] == ("done", 1) for i in ids)
    finally:
        proc.stop()


async def test_cancel_and_deadline(mosquitto: MosquittoBroker, flightd: FlightdProcess) -> None:
    x = np.random.default_rng(5).standard_normal((1, 64, 64, 64)).astype(np.float32)
    async with GroundClient(mosquitto.url, "sat1") as ground:
        # More jobs than the executor takes at once (2 x concurrency): the last stays queued even when
        # the first has finished by the time of the cancel on a loaded machine.
        jobs = [await ground.submit("slow", {"x": x}) for _ in range(6)]
        last = jobs[-1].job_id
        assert (await ground.cancel(last))["state"] == "cancelled"
        states = [e.state async for e in ground.watch(last)]
        assert states[-1] is JobState.CANCELLED
        late = await ground.submit(DIGITS, {"image": digits_sample(1)}, deadline_s=-1.0)
        assert late.ack.state is JobState.EXPIRED
        with pytest.raises(GroundError, match="nothing to cancel"):
            await ground.cancel(late.job_id)


async def test_embedded_broker_zero_setup_path(embedded_broker: object, tmp_path: Path, models_dir: Path) -> None:
    url = embedded_broker.url  # type: ignore[attr-defined]
    proc = FlightdProcess(url, tmp_path / "data", models_dir)
    proc.start()
    try:
        await wait_online(url)
        x = digits_sample(2)
        async with GroundClient(url, "sat1") as ground:
            job = await ground.submit(DIGITS, {"image": x})
            fetched = await ground.wait_result(job.job_id)
        np.testing.assert_allclose(fetched.outputs["logits"], reference_logits(x), rtol=1e-5, atol=1e-5)
    finally:
        proc.stop()


def test_ground_cli_submit_wait_and_clear_errors(mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path) -> None:
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir)
    proc.start()
    try:
        asyncio.run(wait_online(mosquitto.url))
        inp, out = tmp_path / "in.npy", tmp_path / "out.npy"
        x = digits_sample(3)
        np.save(inp, x)
        base = [sys.executable, "-m", "ground.cli", "--broker", mosquitto.url, "--sat", "sat1", "--timeout", "20"]
        r = subprocess.run([*base, "submit", DIGITS, str(inp), "--wait", "-o", str(out)],
                           capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(np.load(out), reference_logits(x), rtol=1e-5, atol=1e-5)
        r = subprocess.run([*base, "jobs", "--json"], capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 0 and json.loads(r.stdout)[0]["state"] == "done"
        r = subprocess.run([*base, "status", "--json"], capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 0 and json.loads(r.stdout)["state"] == "online"
        r = subprocess.run([*base, "submit", "nope", str(tmp_path / "in.npy"), "--input-name", "image"],
                           capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 1
        assert r.stderr.strip().count("\n") == 0 and "unknown model 'nope'" in r.stderr
        r = subprocess.run([*base, "result", "no-such-job", "-o", str(out), "--keep"],
                           capture_output=True, text=True, cwd=REPO, timeout=60)
        assert r.returncode == 1 and r.stderr.startswith("ground: error:")
    finally:
        proc.stop()


async def test_will_marks_offline_when_flightd_dies(mosquitto: MosquittoBroker, flightd: FlightdProcess) -> None:
    flightd.kill9()
    async with GroundClient(mosquitto.url, "sat1") as ground:
        deadline = time.monotonic() + 30
        while (await ground.status()).state != "offline":
            assert time.monotonic() < deadline, "last will never published"
            await asyncio.sleep(0.5)


async def test_json_request_payload_is_plain_json() -> None:
    """The JSON encoding is one JSON document (what docs/icd.md tells hand-written clients to send)."""
    from link.codec import pack_tensors

    tensors, binary = pack_tensors({"image": digits_sample(1)}, framed=False)
    payload = encode(JobRequest(job_id="j", model=DIGITS, inputs=tensors), binary)
    assert json.loads(payload)["inputs"]["image"]["shape"] == [1, 1, 8, 8]
    with pytest.raises(aiomqtt.MqttError):
        async with make_client(BrokerUrl.parse("mqtt://127.0.0.1:1"), timeout_s=1.0):
            pass
