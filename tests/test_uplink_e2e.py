"""Model uplink end to end: ground uploader -> real Mosquitto -> flightd (a real process) -> registry -> job.

Covers the issue's "done when": a 10 MB model uploaded across a broker restart in the middle of the
upload, resumed (only missing chunks re-sent), installed, activated, run, rolled back; a model with one
flipped byte rejected with a clear event and never loadable; a flightd kill -9 mid-upload resumed from
its on-disk staging.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest

from ground.client import GroundClient, JobRejected
from ground.model.cli import add_upload_parser
from ground.model.files import build_manifest
from ground.model.upload import UploadStats, upload_id_for, upload_model
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode
from link.manifest import MODEL_FILE
from link.messages import Event, EventKind
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from link.uplink import UploadState, chunk_count
from tests.support import FlightdProcess, copy_bundled, wait_online, wait_until
from tests.test_uplink_receiver import build_matmul_model

TOPICS = TopicMap("sat1")

@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return copy_bundled(tmp_path / "models", "digits-int8")


async def run_job(broker: str, model: str, x: np.ndarray) -> np.ndarray:
    async with GroundClient(broker, "sat1") as ground:
        job = await ground.submit(model, {"x": x})
        return np.asarray((await ground.wait_result(job.job_id, timeout_s=30)).outputs["y"])


async def test_10mb_upload_across_broker_restart_resumes_then_activates_runs_and_rolls_back(
    mosquitto: MosquittoBroker, flightd: FlightdProcess, tmp_path: Path, models_dir: Path
) -> None:
    src = tmp_path / "big.onnx"
    w1 = build_matmul_model(src, 1024, 2560, seed=11)  # 10.5 MB of float32 weights
    size = src.stat().st_size
    assert size > 10 * 1024 * 1024
    n = chunk_count(size, 65536)
    loop = asyncio.get_running_loop()
    restarted = asyncio.Event()
    stopped_at: list[int] = []
    restarts: list[asyncio.Task[None]] = []

    async def restart_broker() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(mosquitto.start)
        restarted.set()

    def on_progress(done: int, total: int) -> None:
        if not stopped_at and done >= total // 2:
            stopped_at.append(done)
            mosquitto.stop()  # synchronous: the broker is gone before the next chunk goes out
            restarts.append(loop.create_task(restart_broker()))

    stats = UploadStats()
    async with GroundClient(mosquitto.url, "sat1") as ground:
        verdict = await upload_model(ground, src, "big", "1.0.0", progress=on_progress, stats=stats,
                                     reply_timeout_s=1.0, timeout_s=60)
    await asyncio.gather(*restarts)
    assert restarted.is_set() and stopped_at
    assert verdict.state is UploadState.INSTALLED, verdict.reason
    # Resumed: the satellite kept what it had, and only the missing chunks went up again.
    assert stats.connections >= 2
    kept = stats.received_on_connect[-1]
    assert 0 < kept < n
    assert sum(stats.chunk_publishes_by_connection[1:]) <= n - kept < n
    assert stats.chunk_publishes < 2 * n
    installed = models_dir / "big" / "1.0.0" / MODEL_FILE
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()

    x = np.random.default_rng(3).standard_normal((1, 1024)).astype(np.float32)
    async with GroundClient(mosquitto.url, "sat1") as ground:
        activated = await ground.activate_model("big", "1.0.0")
        assert activated["active"] == "1.0.0"
    np.testing.assert_allclose(await run_job(mosquitto.url, "big", x), x @ w1, rtol=1e-4, atol=1e-3)

    # A second version (same input, 8 outputs) goes up, is installed but not active until activated.
    src2 = tmp_path / "big2.onnx"
    w2 = build_matmul_model(src2, 1024, 8, seed=12)
    async with GroundClient(mosquitto.url, "sat1") as ground:
        v2 = await upload_model(ground, src2, "big", "2.0.0", timeout_s=30)
        assert v2.state is UploadState.INSTALLED, v2.reason
        listing = {m["version"]: m["active"] for m in await ground.models() if m["name"] == "big"}
        assert listing == {"1.0.0": True, "2.0.0": False}
        await ground.activate_model("big", "2.0.0")
    np.testing.assert_allclose(await run_job(mosquitto.url, "big", x), x @ w2, rtol=1e-4, atol=1e-3)
    async with GroundClient(mosquitto.url, "sat1") as ground:
        assert (await ground.rollback_model("big"))["active"] == "1.0.0"
    np.testing.assert_allclose(await run_job(mosquitto.url, "big", x), x @ w1, rtol=1e-4, atol=1e-3)
    assert flightd.alive()


async def collect(url: str, topic: str, into: list[bytes], ready: asyncio.Event) -> None:
    async with make_client(BrokerUrl.parse(url)) as client:
        await client.subscribe(topic, qos=1)
        ready.set()
        async for m in client.messages:
            into.append(bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b"")


async def test_flipped_byte_is_rejected_with_a_clear_event_and_never_loadable(
    mosquitto: MosquittoBroker, flightd: FlightdProcess, tmp_path: Path, models_dir: Path
) -> None:
    src = tmp_path / "good.onnx"
    build_matmul_model(src, 256, 256, seed=5)
    manifest = build_manifest(src, name="flip", version="1.0.0")
    bad = tmp_path / "bad.onnx"
    data = bytearray(src.read_bytes())
    data[len(data) - 1000] ^= 0x08  # one bit of one weight
    bad.write_bytes(bytes(data))
    seen: list[bytes] = []
    ready = asyncio.Event()
    collector = asyncio.create_task(collect(mosquitto.url, TOPICS.events, seen, ready))
    await ready.wait()
    try:
        async with GroundClient(mosquitto.url, "sat1") as ground:
            verdict = await upload_model(ground, bad, "flip", "1.0.0", manifest=manifest, chunk_bytes=16384,
                                         timeout_s=30)
            assert verdict.state is UploadState.REJECTED
            assert verdict.reason is not None and verdict.reason.startswith("sha256 mismatch")
            assert hashlib.sha256(bytes(data)).hexdigest() in verdict.reason

            def errors() -> list[Event]:
                events = [decode(p, Event).message for p in seen if p]
                return [e for e in events if e.kind is EventKind.MODEL and e.severity == "error"]

            await wait_until(lambda: bool(errors()), 10, "the rejection event")
            event = errors()[0]
            assert "rejected: sha256 mismatch" in event.message and event.details["name"] == "flip"
            assert all(m["name"] != "flip" for m in await ground.models())
            with pytest.raises(JobRejected, match="unknown model 'flip'"):
                await ground.submit("flip", {"x": np.zeros((1, 256), np.float32)})
    finally:
        collector.cancel()
    assert not (models_dir / "flip").exists()
    staged = tmp_path / "data" / "uplink" / upload_id_for(manifest, 16384)
    assert (staged / "outcome.json").is_file() and not (staged / "data.part").exists()


async def test_flightd_kill9_mid_upload_resumes_from_its_staging(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path
) -> None:
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir)
    proc.start()
    try:
        await wait_online(mosquitto.url)
        src = tmp_path / "mid.onnx"
        w = build_matmul_model(src, 512, 1024, seed=7)  # 2 MB
        chunk_bytes = 16384
        n = chunk_count(src.stat().st_size, chunk_bytes)
        manifest = build_manifest(src, name="mid", version="1")
        sidecar = tmp_path / "data" / "uplink" / upload_id_for(manifest, chunk_bytes) / "chunks.sha256"

        def staged() -> int:
            raw = sidecar.read_bytes() if sidecar.exists() else b""
            return sum(1 for i in range(0, len(raw), 32) if raw[i : i + 32] != bytes(32))

        half = asyncio.Event()
        async with GroundClient(mosquitto.url, "sat1") as ground:
            first = asyncio.create_task(upload_model(
                ground, src, "mid", "1", chunk_bytes=chunk_bytes, window=4, reply_timeout_s=1.0,
                progress=lambda done, total: half.set() if done >= total // 2 else None,
            ))
            await half.wait()
            first.cancel()  # the ground goes away half way
            with pytest.raises(asyncio.CancelledError):
                await first
        await wait_until(lambda: staged() > 0, 10, "chunks staged onboard")
        await asyncio.sleep(0.3)
        proc.kill9()
        on_disk = staged()
        assert 0 < on_disk < n
        proc.start()
        await wait_online(mosquitto.url)
        stats = UploadStats()
        async with GroundClient(mosquitto.url, "sat1") as ground:
            verdict = await upload_model(ground, src, "mid", "1", chunk_bytes=chunk_bytes, stats=stats,
                                         reply_timeout_s=1.0, timeout_s=30)
        assert verdict.state is UploadState.INSTALLED, verdict.reason
        resumed_with = stats.received_on_connect[0]
        assert resumed_with >= on_disk
        assert stats.chunk_publishes == n - resumed_with < n
        x = np.random.default_rng(8).standard_normal((1, 512)).astype(np.float32)
        np.testing.assert_allclose(await run_job(mosquitto.url, "mid", x), x @ w, rtol=1e-4, atol=1e-3)
    finally:
        proc.stop()


async def test_cli_upload_with_activate(
    mosquitto: MosquittoBroker, flightd: FlightdProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "cli.onnx"
    build_matmul_model(src, 32, 4, seed=9)
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker")
    parser.add_argument("--sat", default="sat1")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--key-id", default="ground")
    parser.add_argument("--key")
    add_upload_parser(parser.add_subparsers(dest="model_command"))
    args = parser.parse_args(["--broker", mosquitto.url, "upload", str(src), "--name", "cli", "--version", "3",
                              "--chunk-bytes", "1024", "--activate"])
    assert await args.handler(args) == 0
    out = capsys.readouterr().out
    assert "cli/3 installed on sat1" in out and "cli: active 3" in out
    args = parser.parse_args(["--broker", mosquitto.url, "upload", str(src), "--name", "digits-int8",
                              "--version", "1.0.0"])
    assert await args.handler(args) == 1
    assert "digits-int8/1.0.0 already exists onboard" in capsys.readouterr().err
