"""Models that can never run, end to end: ground -> real Mosquitto -> flightd (a real process).

- ``ground model upload`` refuses each kind before its first chunk, judged by the limits flightd advertises,
  with the fix in the reason; nothing at all reaches the broker's upload topics.
- A ground that does not check (raw messages) gets each kind rejected onboard: the reason on the upload's
  progress topic, an error event, a line in flightd's log; flightd never crashes and the jobs queued
  meanwhile all finish.
- A job whose two inputs disagree on a shared symbolic dimension is ``rejected`` at intake; a model whose
  output has unknown rank is installed and runs.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest

from ground.cli import main as ground_main
from ground.client import GroundClient, JobRejected
from ground.model.files import build_manifest
from ground.model.upload import UploadFailed, upload_model
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode
from link.manifest import ModelManifest, TensorSpec
from link.messages import Event, EventKind
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from link.uplink import UploadProgress, UploadState
from tests import unrunnable_models as bad
from tests.support import FlightdProcess, build_slow_model, wait_online, wait_until
from tests.test_uplink_e2e import collect
from tests.test_uplink_receiver import begin_payload, chunk_payload, chunks_of

TOPICS = TopicMap("sat1")
UPLOADS = f"{TOPICS.base}/models/upload/#"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "models"
    build_slow_model(directory)  # ~85 ms a run: jobs queue up behind each other
    return directory


def bad_files(directory: Path, limits_opset: int) -> dict[str, tuple[Path, str]]:
    """name -> (model file, what the refusal must say)."""
    cases = {
        "external data": (bad.external_data(directory / "ext"), "save_as_external_data=False"),
        "custom domain": (bad.custom_domain(), "flightd loads no custom-op library"),
        "opset too new": (bad.opset(limits_opset + 1), "onnx.version_converter.convert_version"),
        "truncated": (bad.good()[:-3], "not an ONNX model, or cut short"),
        "unknown-rank input": (bad.unknown_rank_input(), "update_inputs_outputs_dims"),
        "damaged tensor": (bad.damaged_tensor(), "the file is damaged"),
    }
    out = {}
    for i, (name, (data, says)) in enumerate(cases.items()):
        path = directory / "ext" / "model.onnx" if name == "external data" else directory / f"bad{i}.onnx"
        path.write_bytes(data)
        out[name] = (path, says)
    return out


async def test_ground_refuses_every_kind_before_the_first_chunk(
    mosquitto: MosquittoBroker, flightd: FlightdProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[bytes] = []
    ready = asyncio.Event()
    collector = asyncio.create_task(collect(mosquitto.url, UPLOADS, seen, ready))
    await ready.wait()
    try:
        async with GroundClient(mosquitto.url, "sat1") as ground:
            status = await ground.advertised_status()
            assert status is not None and status.model_limits is not None
            limits = status.model_limits
            for name, (path, says) in bad_files(tmp_path, limits.opsets[""]).items():
                with pytest.raises(UploadFailed) as info:
                    await upload_model(ground, path, name.replace(" ", "-"), "1.0.0", timeout_s=10)
                text = str(info.value)
                assert says in text, (name, text)
                assert f"as sat1 advertises (ONNX Runtime {limits.onnxruntime})" in text and "nothing was sent" in text
            # a manifest that lies about the dtype is refused too, before anything is sent
            good = tmp_path / "good.onnx"
            good.write_bytes(bad.good())
            lying = build_manifest(good.read_bytes(), name="adder", version="1").model_copy(
                update={"inputs": [TensorSpec(name="x", dtype="float64", shape=["N", 4])]})
            with pytest.raises(UploadFailed, match=r"inputs \[x float64 \['N', 4\]\] are not the model's"):
                await upload_model(ground, good, "adder", "1", manifest=lying, timeout_s=10)
            # the command line says the same, on stderr, with exit status 1
            path, says = bad_files(tmp_path / "cli", limits.opsets[""])["external data"]
            argv = ["--broker", mosquitto.url, "model", "upload", str(path), "--name", "ext", "--version", "1"]
            assert await asyncio.to_thread(ground_main, argv) == 1
            err = capsys.readouterr().err
            assert says in err and "as sat1 advertises" in err and "nothing was sent" in err, err
            await asyncio.sleep(0.5)
            assert seen == [], f"{len(seen)} message(s) reached the upload topics"
            # the collector does see an upload that is sent (so the silence above means something)
            verdict = await upload_model(ground, good, "adder", "1", timeout_s=20)
            assert verdict.state is UploadState.INSTALLED, verdict.reason
            await wait_until(lambda: len(seen) > 0, 5, "the good upload's messages")
    finally:
        collector.cancel()
    assert flightd.alive()


async def publish_upload(url: str, uid: str, data: bytes, manifest: ModelManifest) -> None:
    """What a ground that checks nothing sends: the begin and every chunk."""
    async with make_client(BrokerUrl.parse(url)) as client:
        await client.publish(TOPICS.upload(uid), begin_payload(uid, manifest, 1024), qos=1)
        for i, part in enumerate(chunks_of(data, 1024)):
            await client.publish(TOPICS.upload(uid), chunk_payload(uid, i, part), qos=1)


async def test_satellite_rejects_every_kind_a_careless_ground_sends_and_keeps_its_queue(
    mosquitto: MosquittoBroker, flightd: FlightdProcess, tmp_path: Path
) -> None:
    seen: list[bytes] = []
    events: list[bytes] = []
    ready, events_ready = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(collect(mosquitto.url, TOPICS.upload_progress_all, seen, ready)),
             asyncio.create_task(collect(mosquitto.url, TOPICS.events, events, events_ready))]
    await ready.wait()
    await events_ready.wait()
    x = np.random.default_rng(4).standard_normal((1, 64, 64, 64)).astype(np.float32)
    try:
        async with GroundClient(mosquitto.url, "sat1") as ground:
            queued = [(await ground.submit("slow", {"x": x})).job_id for _ in range(6)]
            status = await ground.advertised_status()
            assert status is not None and status.model_limits is not None
            files = bad_files(tmp_path, status.model_limits.opsets[""])
            good = bad.good()
            lying = build_manifest(good, name="liar", version="1").model_copy(
                update={"outputs": [TensorSpec(name="y", dtype="int64", shape=["N", 4])]})
            sent: dict[str, tuple[str, str]] = {"u-liar": ("liar", "outputs [y int64 ['N', 4]] are not the model's")}
            await publish_upload(mosquitto.url, "u-liar", good, lying)
            for i, (name, (path, says)) in enumerate(files.items()):
                data = path.read_bytes()
                manifest = build_manifest(good, name=f"bad{i}", version="1").model_copy(
                    update={"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data),
                            "opset_import": {}, "ir_version": None})
                sent[f"u{i}"] = (name, says)
                await publish_upload(mosquitto.url, f"u{i}", data, manifest)

            def verdicts() -> dict[str, UploadProgress]:
                out = {}
                for payload in seen:
                    progress = decode(payload, UploadProgress).message
                    if progress.state.terminal:
                        out[progress.upload_id] = progress
                return out

            await wait_until(lambda: set(verdicts()) >= set(sent), 30, "a verdict on every upload")
            log = flightd.log()
            errors = [decode(p, Event).message for p in events if p]
            for uid, (name, says) in sent.items():
                verdict = verdicts()[uid]
                assert verdict.state is UploadState.REJECTED and says in (verdict.reason or ""), (name, verdict)
                assert any(e.kind is EventKind.MODEL and e.severity == "error" and uid in e.message
                           and says in e.message for e in errors), name
                assert f"uplink {uid}:" in log and says in log, name
            for job_id in queued:
                result = await ground.wait_result(job_id, timeout_s=60)
                assert result.outputs["y"].shape == (1, 64, 64, 64)
            assert all(m["name"] == "slow" for m in await ground.models())
            assert "Traceback" not in flightd.log()
    finally:
        for task in tasks:
            task.cancel()
    assert flightd.alive()


async def test_shared_symbolic_dims_bind_at_intake_and_unknown_rank_outputs_run(
    mosquitto: MosquittoBroker, flightd: FlightdProcess, tmp_path: Path
) -> None:
    pair, reshape = tmp_path / "pair.onnx", tmp_path / "reshape.onnx"
    pair.write_bytes(bad.shared_dims())
    reshape.write_bytes(bad.unknown_rank_output())
    a = np.ones((3, 4), np.float32)
    async with GroundClient(mosquitto.url, "sat1") as ground:
        for path, name in ((pair, "pair"), (reshape, "reshape")):
            verdict = await upload_model(ground, path, name, "1.0.0", timeout_s=30)
            assert verdict.state is UploadState.INSTALLED, verdict.reason
        with pytest.raises(JobRejected, match=r"dimension 'N' is 3 in input 'a' axis 0 but 2 in input 'b' axis 0"):
            await ground.submit("pair", {"a": a, "b": np.ones((2, 4), np.float32)})
        job = await ground.submit("pair", {"a": a, "b": 2 * a})
        np.testing.assert_array_equal((await ground.wait_result(job.job_id, timeout_s=30)).outputs["y"], 3 * a)
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        job = await ground.submit("reshape", {"x": x, "shape": np.array([4, 2], np.int64)})
        y = (await ground.wait_result(job.job_id, timeout_s=30)).outputs["y"]
        np.testing.assert_array_equal(y, x.reshape(4, 2))
        listing = {m["name"]: m for m in await ground.models()}
        assert listing["reshape"]["outputs"] == [{"name": "y", "dtype": "float32", "shape": None}]
    assert flightd.alive()


async def test_a_begin_the_satellite_refuses_fails_the_upload_at_once(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """flightd holds a command key and the ground has none: each begin is refused ("not signed"). The
    uploader stops after a few begins with that reason instead of re-sending it until its timeout."""
    key = bytes(range(32))
    config = tmp_path / "flightd.toml"
    config.write_text(f'[security]\ncommand_keys = {{ ground = "{key.hex()}" }}\ncommand_window_s = 600\n')
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", build_slow_model(tmp_path / "models").parent.parent,
                          config=config)
    proc.start()
    try:
        await wait_online(mosquitto.url, key_id="ground", key=key)
        good = tmp_path / "good.onnx"
        good.write_bytes(bad.good())
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with GroundClient(mosquitto.url, "sat1") as ground:
            with pytest.raises(UploadFailed, match=r"did not take the begin 5 times in a row: refused message: "
                                                   r"model upload is not signed"):
                await upload_model(ground, good, "adder", "1", timeout_s=60)
        assert loop.time() - started < 20
        async with GroundClient(mosquitto.url, "sat1", key_id="ground", key=key) as ground:
            verdict = await upload_model(ground, good, "adder", "1", timeout_s=30)
            assert verdict.state is UploadState.INSTALLED, verdict.reason
        assert proc.alive()
    finally:
        proc.stop()
