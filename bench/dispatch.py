"""Submit -> result latency of a tiny model through loopback Mosquitto, against its floor.

``python -m bench.dispatch --json`` prints one JSON object: ``p50_ms``, ``p99_ms`` (one job at a time,
from the ground client's publish of the job to its receipt of the result, the acknowledgement and the
state events in between included; each result is acknowledged outside the timed window), and in the
same run, alternating job by job with them so that drift on a shared machine falls on both alike, the
floor (:mod:`bench.floor`): a bare QoS 1 request/reply round trip of the same request and result sizes
through the same broker, with two fsyncs of 4 KiB in the journal's directory. ``floor_ms`` is the
floor's p50; ``p50_over_floor`` and ``p99_over_floor`` divide flightd's percentiles by the floor's
(p50 by p50, p99 by p99). ``fsync_ms`` is one fsync alone (p50); the CPU it ran on is reported too.
Absolute milliseconds do not carry from one machine to another; the ratios do.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import numpy as np

from bench.floor import FloorProbe, fsync_ms
from bench.harness import cpu_info, progress, report, rig
from ground.client import GroundClient
from link.codec import encode, pack_tensors
from link.messages import JobRequest, JobResult

MODEL = "digits-int8"


async def timed_job(ground: GroundClient, x: np.ndarray[Any, Any]) -> float:
    """Submit -> result latency of one job of :data:`MODEL` (ms); the result is acknowledged after
    the timed window."""
    t0 = time.perf_counter()
    job = await ground.submit(MODEL, {"image": x})
    await ground.wait_result(job.job_id, ack=False)
    elapsed = time.perf_counter() - t0
    await ground.ack(job.job_id)
    return elapsed * 1e3


def wire_sizes(x: np.ndarray[Any, Any]) -> tuple[int, int]:
    """Bytes of a :data:`MODEL` job request on ``x`` and of its result (a 1x10 float32 output)."""
    tensors, binary = pack_tensors({"image": x})
    request = encode(JobRequest(job_id="bench-000000000000000000", model=MODEL, inputs=tensors), binary)
    out, out_binary = pack_tensors({"logits": np.zeros((1, 10), np.float32)})
    result = encode(JobResult(job_id="bench-000000000000000000", model=MODEL, version="1.0.0", outputs=out,
                              started_utc=time.time(), finished_utc=time.time(), run_ms=0.01,
                              provider="CPUExecutionProvider"), out_binary)
    return len(request), len(result)


def percentiles(values: list[float]) -> tuple[float, float]:
    a = np.array(values)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


async def measure(n: int, warmup: int) -> dict[str, Any]:
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    request_bytes, reply_bytes = wire_sizes(x)
    async with (
        rig(MODEL, threads=1) as r,
        GroundClient(r.broker.url, "bench") as ground,
        FloorProbe(r.broker.url, r.workdir / "data", request_bytes, reply_bytes) as floor,
    ):
        await ground.track_all_jobs()
        latencies, floors = [], []
        for i in range(warmup + n):
            elapsed_ms = await timed_job(ground, x)
            floor_ms = await floor.round_trip_ms()
            if i >= warmup:
                latencies.append(elapsed_ms)
                floors.append(floor_ms)
        fsync = float(np.median(fsync_ms(r.workdir / "data")))
        rss = r.rss_mb()
    p50, p99 = percentiles(latencies)
    f50, f99 = percentiles(floors)
    return {
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "mean_ms": round(float(np.mean(latencies)), 3),
        "max_ms": round(float(np.max(latencies)), 3),
        "floor_ms": round(f50, 3),
        "floor_p99_ms": round(f99, 3),
        "p50_over_floor": round(p50 / f50, 3),
        "p99_over_floor": round(p99 / f99, 3),
        "fsync_ms": round(fsync, 3),
        "request_bytes": request_bytes,
        "result_bytes": reply_bytes,
        "n": len(latencies),
        "model": MODEL,
        "broker": "mosquitto (loopback, set_tcp_nodelay true)",
        "flightd_rss_mb": round(rss.get("VmRSS", float("nan")), 1),
        "cpu": cpu_info(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)
    progress(f"bench.dispatch: {args.n} jobs of {MODEL}, one at a time, alternating with the floor")
    result = asyncio.run(measure(args.n, args.warmup))
    report(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
