"""``hil plant`` on a real Mosquitto: publishes power/thermal/orbit telemetry and follows the compute
channel (more busy cores -> more compute_w in the plant's power telemetry)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time

import pytest

from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode, encode
from link.messages import Telemetry
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client

SAT = "plant-test"
IDLE_W, W_PER_CORE = 12.0, 35.0  # nominal-550km board profile


async def test_hil_plant_publishes_and_reacts_to_compute(mosquitto: MosquittoBroker) -> None:
    topics = TopicMap(SAT)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hil.cli",
            "plant",
            "--broker",
            mosquitto.url,
            "--sat",
            SAT,
            "--scenario",
            "nominal-550km",
            "--warp",
            "100",
            "--rate",
            "1",
            "--duration",
            "100000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen: dict[str, list[Telemetry]] = {"power": [], "thermal": [], "orbit": []}
    try:
        async with make_client(BrokerUrl.parse(mosquitto.url), identifier="plant-test-ground") as client:
            await client.subscribe(topics.telemetry_all, qos=0)

            async def publish_busy(busy: float) -> None:
                msg = Telemetry(sat=SAT, channel="compute", t_s=0.0, values={"busy_cores": busy})
                await client.publish(topics.telemetry("compute"), encode(msg), qos=0)

            async def collect_until(pred: object, timeout_s: float) -> Telemetry:
                async with asyncio.timeout(timeout_s):
                    async for m in client.messages:
                        tlm = decode(bytes(m.payload), Telemetry).message
                        if tlm.channel in seen:
                            seen[tlm.channel].append(tlm)
                        if tlm.channel == "power" and pred(tlm):  # type: ignore[operator]
                            return tlm
                raise AssertionError("unreachable")

            first = await collect_until(lambda t: True, 20.0)
            assert first.values["compute_w"] == pytest.approx(IDLE_W)
            await publish_busy(2.0)
            busy = await collect_until(lambda t: t.values["compute_w"] > IDLE_W + 1.0, 10.0)
            assert busy.values["compute_w"] == pytest.approx(IDLE_W + 2 * W_PER_CORE)
            assert busy.values["load_w"] == pytest.approx(35.0 + IDLE_W + 2 * W_PER_CORE)
            await publish_busy(0.5)
            half = await collect_until(lambda t: t.values["compute_w"] < IDLE_W + W_PER_CORE, 10.0)
            assert half.values["compute_w"] == pytest.approx(IDLE_W + 0.5 * W_PER_CORE)
            assert half.t_s > busy.t_s > first.t_s
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert seen["thermal"] and seen["orbit"], "all three plant channels are published"
    assert {"board_c", "radiator_c"} <= set(seen["thermal"][-1].values)
    orbit = seen["orbit"][-1].values
    assert orbit["period_s"] == pytest.approx(5739.0, abs=1.0) and orbit["beta_deg"] == 0.0
    # simulated time runs at about warp x wall time: consecutive power samples 1 s apart in t_s
    ts = [t.t_s for t in seen["power"]]
    assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(ts))


async def test_hil_plant_dropout_fault_suppresses_published_samples(
    mosquitto: MosquittoBroker, tmp_path: object
) -> None:
    """A scenario with a power dropout on [20, 40) s: no power samples with t_s in that window."""
    from pathlib import Path

    from hil.scenario import SCENARIO_DIR

    path = Path(str(tmp_path)) / "dropout.toml"
    path.write_text(
        (SCENARIO_DIR / "nominal-550km.toml").read_text()
        + '\n[[faults]]\nkind = "dropout"\nt_s = 20.0\nuntil_s = 40.0\nchannel = "power"\n'
    )
    topics = TopicMap(SAT)
    got: list[float] = []
    thermal: list[float] = []
    async with make_client(BrokerUrl.parse(mosquitto.url), identifier="plant-test-ground2") as client:
        await client.subscribe(topics.telemetry_all, qos=0)
        from hil.plant_service import serve

        task = asyncio.create_task(serve(mosquitto.url, SAT, str(path), warp=200.0, rate_hz=1.0, duration_s=60.0))
        t_end = time.monotonic() + 20.0
        async with asyncio.timeout(20.0):
            async for m in client.messages:
                tlm = decode(bytes(m.payload), Telemetry).message
                (got if tlm.channel == "power" else thermal if tlm.channel == "thermal" else []).append(tlm.t_s)
                if (tlm.t_s >= 60.0 - 1e-9 and tlm.channel == "orbit") or time.monotonic() > t_end:
                    break
        await task
    assert got and not [t for t in got if 20.0 <= t < 40.0]
    assert [t for t in thermal if 20.0 <= t < 40.0], "other channels are not dropped"
    assert max(got) == pytest.approx(60.0)
