"""Telemetry ingest while inferring: how fast flightd takes plant telemetry into its governor while
it runs inference flat out, and how late its control cycle runs meanwhile.

``python -m bench.ingest --json`` prints one JSON object: ``msgs_per_s`` (plant telemetry samples
flightd took in for its governor per second: the count its ``ping`` reports, over the time from the
first publish to the last sample taken in), ``max_slip_ms`` (the control cycle's worst slip over the
run, from ``ping``), ``sent``, ``absorbed``, ``jobs_done`` (tile-int8 jobs finished meanwhile), and
the CPU it ran on.

Set-up: Mosquitto and flightd on loopback, the governor configured from the nominal-550km scenario's
design data (``hil.governor_sim.governor_config_for``), a 0.1 s control period; inference pinned to
its own CPU and the event loop, broker and clients on the other(s) as in bench.overhead's fair mode
(on one CPU: not pinned). A ground client keeps ``--window`` tile-int8 jobs outstanding throughout;
a plant client publishes the scenario's power, thermal and orbit samples every 0.2 s from the start
(mission time following the wall clock), then ``-n`` more at QoS 0 as fast as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

import numpy as np

from bench.harness import REPO, cpu_info, progress, report, rig
from ground.client import GroundClient
from hil.governor_sim import governor_config_for
from hil.plant_service import PlantRunner
from hil.scenario import load_scenario
from link.codec import encode
from link.messages import Telemetry
from link.telemetry import CLOCK
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client

MODEL = "tile-int8"
SCENARIO = REPO / "hil" / "scenarios" / "nominal-550km.toml"
CONTROL_PERIOD_S = 0.1


class PlantFeed:
    """The scenario's first power, thermal and orbit samples, sent again and again with mission time
    following the wall clock from the first one (s)."""

    def __init__(self, sat: str) -> None:
        runner = PlantRunner(load_scenario(SCENARIO), 1.0)
        self.samples = [s for s in runner.advance_to(runner.t_s + 1.0) if s.channel != CLOCK]
        self.topics = [TopicMap(sat).telemetry(s.channel) for s in self.samples]
        self.sat, self.t0, self.m0 = sat, self.samples[0].t_s, time.monotonic()
        self.sent = 0

    def next(self) -> tuple[str, bytes]:
        """The next (topic, payload)."""
        i = self.sent % len(self.samples)
        self.sent += 1
        sample = self.samples[i]
        message = Telemetry(sat=self.sat, channel=sample.channel, t_s=self.t0 + time.monotonic() - self.m0,
                            at_utc=time.time(), values=sample.values)
        return self.topics[i], encode(message)


async def measure(n: int, window: int) -> dict[str, Any]:
    sc = load_scenario(SCENARIO)
    governor = governor_config_for(sc.build_plant(), sc.limits, 1.0)
    settings = {"ORBITD_GOVERNOR": governor.model_dump_json(), "ORBITD_CONTROL_PERIOD_S": str(CONTROL_PERIOD_S)}
    cpus = sorted(os.sched_getaffinity(0))
    shell = set(cpus[:-1]) if len(cpus) > 1 else None
    if shell:
        settings["ORBITD_EXECUTOR__INFERENCE_CPUS"] = json.dumps([cpus[-1]])
        os.sched_setaffinity(0, shell)
    feed = PlantFeed("bench")
    manifest = json.loads((REPO / "models" / MODEL / "1.0.0" / "manifest.json").read_text())
    spec = manifest["inputs"][0]
    x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in spec["shape"]], dtype=np.float32)
    try:
        async with (
            rig(MODEL, threads=1, settings=settings, shell_cpus=shell) as r,
            GroundClient(r.broker.url, "bench", timeout_s=120) as ground,
            make_client(BrokerUrl.parse(r.broker.url), identifier="bench-plant") as plant,
        ):
            flooding = asyncio.Event()

            async def pace() -> None:  # ordinary telemetry (every 0.2 s) keeps the governor out of safe mode
                while not flooding.is_set():
                    for _ in feed.samples:
                        await plant.publish(*feed.next(), qos=0)
                    await asyncio.sleep(0.2)

            pacer = asyncio.create_task(pace())
            await ground.track_all_jobs()
            deadline = time.monotonic() + 10
            while (await ground.status()).mode == "safe" and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            done = 0

            async def feeder() -> None:
                nonlocal done
                while True:
                    job = await ground.submit(MODEL, {spec["name"]: x})
                    await ground.wait_result(job.job_id, ack=False)
                    done += 1

            feeders = [asyncio.create_task(feeder()) for _ in range(window)]
            await asyncio.sleep(2.0)  # inference flat out
            flooding.set()
            await pacer
            before = (await ground.ping())["telemetry_samples"]
            jobs_before = done
            t0 = time.perf_counter()
            for _ in range(n):
                await plant.publish(*feed.next(), qos=0)
            absorbed, t_last, stalled_at = before, t0, time.perf_counter()
            while absorbed - before < n and time.perf_counter() - stalled_at < 2.0:
                await asyncio.sleep(0.02)
                count = (await ground.ping())["telemetry_samples"]
                if count > absorbed:
                    absorbed, t_last, stalled_at = count, time.perf_counter(), time.perf_counter()
            health = await ground.ping()
            status = await ground.status()
            jobs = done - jobs_before
            for task in feeders:
                task.cancel()
            for task in feeders:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        os.sched_setaffinity(0, set(cpus))
    got = absorbed - before
    return {
        "msgs_per_s": round(got / (t_last - t0), 1),
        "max_slip_ms": round(float(health["control_max_slip_ms"]), 2),
        "sent": n,
        "absorbed": got,
        "jobs_done": jobs,
        "jobs_per_s": round(jobs / (t_last - t0), 1),
        "control_period_s": CONTROL_PERIOD_S,
        "pinned": shell is not None,
        "mode_after": str(status.mode),
        "cpu": cpu_info(),
        "loadavg": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-n", type=int, default=20000, help="telemetry messages to publish")
    parser.add_argument("--window", type=int, default=8, help="jobs kept outstanding")
    args = parser.parse_args(argv)
    progress(f"bench.ingest: {args.n} telemetry samples into flightd while it runs {MODEL} flat out")
    result = asyncio.run(measure(args.n, args.window))
    report(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
