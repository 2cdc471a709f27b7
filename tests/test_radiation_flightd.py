"""Soft errors in a running flightd (issue 15), end to end: real Mosquitto, real flightd process, real ONNX
Runtime, real journal file. Upsets come through the TEST-ONLY ``inject_fault`` command (or, for the
journal, a bit flipped in the SQLite file on disk while flightd is stopped).

- a weight flip is found by the scrubber within one period, repaired before the next run, and the job
  that ran on the corrupt weights in between is computed again, its corrected result published;
- DMR catches a fault in one run's output and takes the majority's answer; the result says so; the same
  fault in an unchecked run escapes (and flightd's test bookkeeping says so);
- the governor raises every job to DMR while the ``radiation`` channel reads high flux;
- a result corrupted on disk is computed again on restart, never republished wrong; a corrupted
  request fails its job with the reason;
- without the setting, fault injection is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from flight.governor import GovernorConfig
from ground.client import GroundClient, GroundError
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode, encode, unpack_tensors
from link.messages import Event, EventKind, FaultTarget, InjectFault, JobResult, JobState, Redundancy, Telemetry
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from tests.support import BUNDLED, FlightdProcess, copy_bundled, wait_online, wait_until

MODEL = "digits-fp32"
TOPICS = TopicMap("sat1")
SCRUB_PERIOD = 1.0  # s: short, so that the tests wait little


def image(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((4, 1, 8, 8), dtype=np.float32)


def reference(x: np.ndarray) -> np.ndarray:
    """The model run directly with ONNX Runtime (defaults: pre-packed), outside flightd."""
    session = ort.InferenceSession(str(BUNDLED / MODEL / "1.0.0" / "model.onnx"), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"image": x})[0])


def config(path: Path, *, injection: bool = True, suspect: str = "rerun", default: str = "none") -> Path:
    lines = [
        "control_period_s = 0.1",
        "[link]",
        "heartbeat_s = 0.5",
        "[radiation]",
        f"scrub_period_s = {SCRUB_PERIOD}",
        f'suspect_results = "{suspect}"',
        f"test_fault_injection = {'true' if injection else 'false'}",
        f'[radiation.models.{MODEL}]',
        "owned_weights = true",
        "replicas = 2",
        f'redundancy = "{default}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Watch:
    """Events, results and the latest ``soft_errors`` sample flightd published."""

    events: list[Event] = field(default_factory=list)
    results: dict[str, list[JobResult]] = field(default_factory=dict)
    outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    soft: dict[str, float] = field(default_factory=dict)

    def soft_error_events(self) -> list[Event]:
        return [e for e in self.events if e.kind is EventKind.SOFT_ERROR]


@contextlib.asynccontextmanager
async def watching(url: str) -> AsyncIterator[Watch]:
    watch = Watch()
    ready = asyncio.Event()

    async def run() -> None:
        async with make_client(BrokerUrl.parse(url)) as client:
            await client.subscribe([(TOPICS.events, 1), (TOPICS.result_all, 1), (TOPICS.telemetry("soft_errors"), 0)])
            ready.set()
            async for m in client.messages:
                payload = bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b""
                if not payload:
                    continue
                topic = str(m.topic)
                if topic == TOPICS.events:
                    watch.events.append(decode(payload, Event).message)
                elif topic == TOPICS.telemetry("soft_errors"):
                    watch.soft = dict(decode(payload, Telemetry).message.values)
                else:
                    decoded = decode(payload, JobResult)
                    result = decoded.message
                    watch.results.setdefault(result.job_id, []).append(result)
                    out = unpack_tensors(result.outputs, decoded.binary)["logits"]
                    watch.outputs.setdefault(result.job_id, []).append(np.asarray(out))

    task = asyncio.create_task(run())
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield watch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return copy_bundled(tmp_path / "models", MODEL)


@contextlib.asynccontextmanager
async def flightd_with(broker: MosquittoBroker, tmp_path: Path, models_dir: Path, cfg: Path,
                       governor: GovernorConfig | None = None) -> AsyncIterator[FlightdProcess]:
    env = {"ORBITD_GOVERNOR": governor.model_dump_json()} if governor is not None else {}
    proc = FlightdProcess(broker.url, tmp_path / "data", models_dir, config=cfg, env=env)
    proc.start()
    try:
        await wait_online(broker.url)
        yield proc
    finally:
        proc.stop()


async def test_weight_flip_is_scrubbed_and_the_job_run_on_it_is_computed_again(
        mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path) -> None:
    x = image()
    golden = reference(x)
    cfg = config(tmp_path / "flightd.toml")
    async with flightd_with(mosquitto, tmp_path, models_dir, cfg) as proc, watching(mosquitto.url) as watch, \
            GroundClient(mosquitto.url, "sat1") as ground:
        first = await ground.wait_result((await ground.submit(MODEL, {"image": x})).job_id, ack=False)
        np.testing.assert_allclose(first.outputs["logits"], golden, rtol=1e-5, atol=1e-5)
        assert first.result.weights_scrubbed and first.result.check == "single" and first.result.runs == 1
        clean = first.outputs["logits"]
        # 8 bits of one 64-bit word in replica 0 (the one single runs read): seed 5 makes them change the logits
        reply = await ground.command(InjectFault(target="weights", model=MODEL, replica=0, bits=8, adjacent=True,
                                                 seed=5))
        injected_at = time.monotonic()
        flips = reply["flips"]
        assert reply["model"] == f"{MODEL}/1.0.0" and len(flips) == 1 and len(flips[0]["bits"]) == 8
        blocks = {b["block"] for b in flips[0]["bits"]}
        hit = await ground.wait_result((await ground.submit(MODEL, {"image": x})).job_id, ack=False)
        assert not np.array_equal(hit.outputs["logits"], clean), "precondition: the flip changes the result"
        await wait_until(lambda: any(e.details.get("blocks") for e in watch.soft_error_events()),
                         3 * SCRUB_PERIOD + 5, "the scrubber's finding")
        found = next(e for e in watch.soft_error_events() if e.details.get("blocks"))
        latency = time.monotonic() - injected_at
        assert latency <= SCRUB_PERIOD + 1.5, f"found after {latency:.2f} s (period {SCRUB_PERIOD} s)"
        assert {(b["replica"], b["block"]) for b in found.details["blocks"]} == {(0, b) for b in blocks}
        assert sum(r["bits"] for r in found.details["repairs"]) == 8
        assert {r["source"] for r in found.details["repairs"]} == {"replica"}  # replica 1 was clean
        # every job run on replica 0 since the block last verified is suspect: the one that read the flip, and
        # the first one too when it ran after that check (the flip's own time is unknown onboard)
        suspects = set(found.details["suspect_jobs"])
        assert hit.result.job_id in suspects and suspects <= {hit.result.job_id, first.result.job_id}
        assert found.details["action"] == "rerun"
        # the suspect job is computed again and its corrected result replaces the wrong one
        await wait_until(lambda: len(watch.results.get(hit.result.job_id, [])) >= 2, 15, "the corrected result")
        corrected = watch.results[hit.result.job_id][-1]
        assert corrected.recomputed and "corrupt" in corrected.recomputed
        np.testing.assert_array_equal(watch.outputs[hit.result.job_id][-1], clean)
        if first.result.job_id in suspects:  # computed again, same result: nothing republished
            await wait_until(lambda: any(e.job_id == first.result.job_id and e.details.get("changed") is False
                                         for e in watch.soft_error_events()), 10, "the first job's re-run")
            assert len(watch.results.get(first.result.job_id, [])) <= 1
        # corrected before the next run
        after = await ground.wait_result((await ground.submit(MODEL, {"image": x})).job_id)
        np.testing.assert_array_equal(after.outputs["logits"], clean)
        await wait_until(lambda: watch.soft.get("reruns_changed", 0) >= 1, 5, "soft_errors telemetry")
        assert watch.soft["blocks_corrupt"] == len(blocks) and watch.soft["bits_repaired"] == 8
        assert watch.soft["injected_weight_bits"] == 8 and watch.soft["suspect_jobs"] >= 1
        assert watch.soft["weight_bytes"] > 2 * 100_000  # two replicas of the digits weights
        assert proc.alive()


async def test_dmr_votes_out_a_run_fault_that_escapes_an_unchecked_run(
        mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path) -> None:
    x = image(4)
    cfg = config(tmp_path / "flightd.toml")
    async with flightd_with(mosquitto, tmp_path, models_dir, cfg), watching(mosquitto.url) as watch, \
            GroundClient(mosquitto.url, "sat1") as ground:
        clean = (await ground.wait_result((await ground.submit(MODEL, {"image": x})).job_id)).outputs["logits"]
        plain = await ground.wait_result((await ground.submit(MODEL, {"image": x}, redundancy=Redundancy.DMR)).job_id)
        assert (plain.result.redundancy, plain.result.check, plain.result.runs) == (Redundancy.DMR, "agreed", 2)
        np.testing.assert_array_equal(plain.outputs["logits"], clean)

        await ground.command(InjectFault(target="run_output", model=MODEL, bits=4))
        voted = await ground.wait_result((await ground.submit(MODEL, {"image": x}, redundancy=Redundancy.DMR)).job_id)
        assert (voted.result.check, voted.result.runs) == ("voted", 3)
        np.testing.assert_array_equal(voted.outputs["logits"], clean)
        event = next(e for e in watch.soft_error_events() if e.job_id == voted.result.job_id)
        assert event.details["verdict"] == "voted" and event.details["redundancy"] == "dmr"

        await ground.command(InjectFault(target="run_output", model=MODEL, bits=4))
        escaped = await ground.wait_result((await ground.submit(MODEL, {"image": x})).job_id)
        assert (escaped.result.check, escaped.result.runs) == ("single", 1)
        assert not np.array_equal(escaped.outputs["logits"], clean)

        tmr = await ground.wait_result((await ground.submit(MODEL, {"image": x}, redundancy=Redundancy.TMR)).job_id)
        assert (tmr.result.check, tmr.result.runs) == ("agreed", 3)
        await wait_until(lambda: watch.soft.get("injected_run_faults", 0) >= 2 and watch.soft.get("checked_jobs", 0)
                         >= 3, 5, "soft_errors telemetry")
        s = watch.soft
        assert (s["run_faults_changed"], s["run_faults_detected"], s["run_faults_escaped"]) == (2, 1, 1)
        assert (s["mismatches"], s["unresolved"]) == (1, 0)
        assert s["redundant_core_s"] > 0 and s["first_run_core_s"] > 0


async def test_governor_raises_redundancy_in_high_flux(
        mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path) -> None:
    """No plant: the test publishes the ``radiation`` channel itself (flux 12, then 0.1); no power or
    thermal channel is required and no limit watched, so the governor stays NOMINAL on its full budget."""
    gov = GovernorConfig(telemetry_period_s=0.2, stale_periods=5.0, required_channels=(), limits=[])
    cfg = config(tmp_path / "flightd.toml", injection=False)
    flux = {"value": 12.0}
    stop = asyncio.Event()

    async def radiation() -> None:
        async with make_client(BrokerUrl.parse(mosquitto.url)) as client:
            t0 = time.monotonic()
            while not stop.is_set():
                values = {"b_nt": 18_500.0, "l_shell": 1.2, "cutoff_gv": 10.0, "flux": flux["value"],
                          "upset_rate_per_mbit_day": flux["value"] * 0.404}
                sample = Telemetry(sat="sat1", channel="radiation", t_s=time.monotonic() - t0, values=values)
                await client.publish(TOPICS.telemetry("radiation"), encode(sample), qos=0)
                await asyncio.sleep(0.1)

    async with flightd_with(mosquitto, tmp_path, models_dir, cfg, gov), GroundClient(mosquitto.url, "sat1") as ground:
        task = asyncio.create_task(radiation())
        try:
            await asyncio.sleep(1.0)
            high = await ground.wait_result((await ground.submit(MODEL, {"image": image()})).job_id)
            assert (high.result.redundancy, high.result.check, high.result.runs) == (Redundancy.DMR, "agreed", 2)
            tmr = await ground.wait_result((await ground.submit(MODEL, {"image": image()},
                                                                redundancy=Redundancy.TMR)).job_id)
            assert tmr.result.redundancy is Redundancy.TMR  # raised, never lowered
            flux["value"] = 0.1
            await asyncio.sleep(1.0)
            low = await ground.wait_result((await ground.submit(MODEL, {"image": image()})).job_id)
            assert (low.result.redundancy, low.result.runs) == (Redundancy.NONE, 1)
        finally:
            stop.set()
            await task


def flip_in_file(db_path: Path, needle: bytes) -> int:
    """Invert one bit of the first copy of ``needle`` in the SQLite file (and its WAL, if any); returns
    how many files held it."""
    hits = 0
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        if not path.exists():
            continue
        data = bytearray(path.read_bytes())
        at = data.find(needle)
        if at >= 0:
            data[at + len(needle) // 2] ^= 0x10
            path.write_bytes(bytes(data))
            hits += 1
    return hits


async def test_result_corrupted_on_disk_is_computed_again_never_republished_wrong(
        mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path) -> None:
    x = image(7)
    golden = reference(x)
    cfg = config(tmp_path / "flightd.toml", injection=False)
    db = tmp_path / "data" / "journal.sqlite3"
    async with flightd_with(mosquitto, tmp_path, models_dir, cfg) as proc, \
            GroundClient(mosquitto.url, "sat1") as ground:
        done = await ground.wait_result((await ground.submit(MODEL, {"image": x})).job_id, ack=False)
        assert proc.terminate() == 0
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT payload FROM results WHERE job_id = ?", (done.result.job_id,)).fetchone()
    payload = bytes(row[0])
    logits_bytes = np.ascontiguousarray(done.outputs["logits"]).tobytes()
    assert logits_bytes in payload, "the result's binary section holds the logits as stored"
    assert flip_in_file(db, logits_bytes) >= 1
    async with watching(mosquitto.url) as watch, flightd_with(mosquitto, tmp_path, models_dir, cfg):
        await wait_until(lambda: any(r.recomputed for r in watch.results.get(done.result.job_id, [])), 20,
                         "the recomputed result")
        await asyncio.sleep(0.5)
        for out in watch.outputs[done.result.job_id]:  # every result published after the restart is the right one
            np.testing.assert_allclose(out, golden, rtol=1e-5, atol=1e-5)
        assert any("checksum" in e.message for e in watch.soft_error_events())
        async with GroundClient(mosquitto.url, "sat1") as ground:
            fetched = await ground.wait_result(done.result.job_id)
            np.testing.assert_array_equal(fetched.outputs["logits"], done.outputs["logits"])
            assert fetched.result.recomputed == "its stored result failed its checksum"


async def test_injection_needs_the_setting_and_corrupt_stored_blobs_are_never_republished(
        mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path) -> None:
    cfg = config(tmp_path / "flightd.toml", injection=False)
    async with flightd_with(mosquitto, tmp_path, models_dir, cfg) as proc, \
            GroundClient(mosquitto.url, "sat1") as ground:
        with pytest.raises(GroundError, match="TEST-ONLY"):
            await ground.command(InjectFault(target="weights", model=MODEL))
        assert "fault injection is ENABLED" not in proc.log()
    cfg = config(tmp_path / "flightd2.toml", injection=True)
    x = image(9)
    async with flightd_with(mosquitto, tmp_path, models_dir, cfg) as proc, watching(mosquitto.url) as watch, \
            GroundClient(mosquitto.url, "sat1") as ground:
        assert "TEST-ONLY fault injection is ENABLED" in proc.log()
        with pytest.raises(GroundError, match="no stored request"):
            await ground.command(InjectFault(target="stored_request", job_id="never-submitted"))
        # a corrupt stored result, read again for a duplicate submission: computed again, the right one sent
        first = await ground.wait_result((await ground.submit(MODEL, {"image": x})).job_id, ack=False)
        reply = await ground.command(InjectFault(target="stored_result", job_id=first.result.job_id, bits=3))
        assert reply["bits"] == 3 and reply["blob_bits"] > 0
        await ground.submit(MODEL, {"image": x}, job_id=first.result.job_id)
        await wait_until(lambda: any(r.recomputed for r in watch.results.get(first.result.job_id, [])), 15,
                         "the recomputed result")
        for out in watch.outputs[first.result.job_id]:
            np.testing.assert_array_equal(out, first.outputs["logits"])
        # result and request both corrupt: nothing can be computed again, the job fails, no result is sent
        second = await ground.wait_result((await ground.submit(MODEL, {"image": x})).job_id, ack=False)
        for target in ("stored_request", "stored_result"):
            await ground.command(InjectFault(target=FaultTarget(target), job_id=second.result.job_id, bits=2))
        before = len(watch.results.get(second.result.job_id, []))
        await ground.submit(MODEL, {"image": x}, job_id=second.result.job_id)

        async def failed() -> bool:
            return (await ground.job(second.result.job_id))["state"] == JobState.FAILED.value

        deadline = time.monotonic() + 15
        while not await failed():
            assert time.monotonic() < deadline, "the job did not fail"
            await asyncio.sleep(0.2)
        info = await ground.job(second.result.job_id)
        assert "stored result corrupted" in info["reason"] and "request" in info["reason"]
        assert len(watch.results.get(second.result.job_id, [])) == before  # nothing new published but the clearing
        assert (await ground.models())[0]["problem"] is None
        await wait_until(lambda: watch.soft.get("stored_corrupt", 0) >= 3, 5, "stored_corrupt counted")
