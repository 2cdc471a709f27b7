"""Submit -> result latency of a tiny model through loopback Mosquitto.

``python -m bench.dispatch --json`` prints ``{"p50_ms", "p99_ms", "n", ...}``: one job at a time,
from the ground client's publish of the job to its receipt of the result (the acknowledgement and
the state events in between included); each result is acknowledged outside the timed window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import numpy as np

from bench.harness import progress, rig
from ground.client import GroundClient

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


async def measure(n: int, warmup: int) -> dict[str, float]:
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    async with rig(MODEL, threads=1) as r, GroundClient(r.broker.url, "bench") as ground:
        await ground.track_all_jobs()
        latencies = []
        for i in range(warmup + n):
            elapsed_ms = await timed_job(ground, x)
            if i >= warmup:
                latencies.append(elapsed_ms)
        rss = r.rss_mb()
    lat = np.array(latencies)
    return {
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "mean_ms": round(float(lat.mean()), 3),
        "max_ms": round(float(lat.max()), 3),
        "n": int(lat.size),
        "model": MODEL,
        "broker": "mosquitto (loopback, set_tcp_nodelay true)",
        "flightd_rss_mb": round(rss.get("VmRSS", float("nan")), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)
    progress(f"bench.dispatch: {args.n} jobs of {MODEL}, one at a time")
    result = asyncio.run(measure(args.n, args.warmup))
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
