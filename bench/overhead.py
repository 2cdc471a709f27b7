"""flightd's end-to-end throughput against a bare ONNX Runtime loop, same model, same threads.

``python -m bench.overhead --json`` prints ``{"bare_per_s", "flightd_per_s", "ratio", "rss_mb", ...}``.
The bare loop is ``session.run`` on one input with the session options flightd uses (intra-op threads,
no spinning). flightd's figure is jobs per second from the first submission to the last result,
with ``--window`` jobs outstanding, each journaled, acknowledged, run, journaled again and published
through a loopback Mosquitto; the submitting ground client runs on the same machine. ``rss_mb`` is
flightd's peak resident memory (VmHWM) with the INT8 model loaded, after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import numpy as np
import onnxruntime as ort

from bench.harness import REPO, progress, rig
from ground.client import GroundClient

MODEL = "tile-int8"


def bare_per_s(model: str, n: int, threads: int, x: np.ndarray) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(REPO / "models" / model / "1.0.0" / "model.onnx"), options)
    name = session.get_inputs()[0].name
    for _ in range(20):
        session.run(None, {name: x})
    t0 = time.perf_counter()
    for _ in range(n):
        session.run(None, {name: x})
    return n / (time.perf_counter() - t0)


async def flightd_per_s(
    model: str, n: int, threads: int, window: int, x: np.ndarray, input_name: str
) -> tuple[float, dict[str, float]]:
    async with rig(model, threads=threads) as r, GroundClient(r.broker.url, "bench", timeout_s=120) as ground:
        await ground.track_all_jobs()
        slots = asyncio.Semaphore(window)

        async def one() -> None:
            async with slots:
                job = await ground.submit(model, {input_name: x})
                await ground.wait_result(job.job_id, ack=False)

        await asyncio.gather(*(one() for _ in range(20)))  # warm-up
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        rate = n / (time.perf_counter() - t0)
        health = await ground.ping()
        return rate, {**r.rss_mb(), "control_max_slip_ms": float(health.get("control_max_slip_ms", float("nan")))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternate bare and flightd this many times")
    parser.add_argument("--batch", type=int, default=1, help="tiles per job (a frame cut into 128x128 tiles)")
    parser.add_argument("--model", default=MODEL, help="bundled model (default: the INT8 tile model)")
    args = parser.parse_args(argv)
    manifest = json.loads((REPO / "models" / args.model / "1.0.0" / "manifest.json").read_text())
    spec = manifest["inputs"][0]
    shape = [d if isinstance(d, int) else args.batch for d in spec["shape"]]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    bare, flight, rss = [], [], {}
    for i in range(args.rounds):
        progress(f"bench.overhead round {i + 1}/{args.rounds}: bare loop")
        bare.append(bare_per_s(args.model, args.n, args.threads, x))
        progress(f"bench.overhead round {i + 1}/{args.rounds}: flightd")
        rate, rss = asyncio.run(flightd_per_s(args.model, args.n, args.threads, args.window, x, spec["name"]))
        flight.append(rate)
    result = {
        "bare_per_s": round(max(bare), 1),
        "flightd_per_s": round(max(flight), 1),
        "ratio": round(max(flight) / max(bare), 4),
        "rss_mb": round(rss.get("VmHWM", float("nan")), 1),
        "rss_now_mb": round(rss.get("VmRSS", float("nan")), 1),
        "control_max_slip_ms": round(rss.get("control_max_slip_ms", float("nan")), 1),
        "bare_rounds": [round(v, 1) for v in bare],
        "flightd_rounds": [round(v, 1) for v in flight],
        "model": args.model,
        "threads": args.threads,
        "n": args.n,
        "tiles_per_job": args.batch,
        "window": args.window,
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
