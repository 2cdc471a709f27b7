"""flightd's end-to-end throughput against a bare ONNX Runtime loop, same model, same threads.

``python -m bench.overhead --json`` prints one JSON object with two measurements:

- **fair** (``fed_ratio``, ``shell_core_ms_per_job``): inference pinned to its own CPU (the last one
  this process may use) in both the bare loop (``os.sched_setaffinity`` on the thread that calls
  ``session.run``, one intra-op thread) and flightd (``executor.inference_cpus``, one intra-op thread),
  while flightd's event loop, the broker and the submitting client share the other CPU(s), as a
  Jetson's CPU feeds its GPU. ``fed_ratio`` is flightd's jobs/s over the bare loop's, same pinning;
  ``shell_core_ms_per_job`` is flightd's CPU time outside its inference threads per job over the
  timed window (/proc, all threads not pinned to the inference CPU).
- **shared** (``ratio`` at 1 tile per job, ``ratio_16`` at 16 tiles per job): today's question, both
  loops with ``--threads`` intra-op threads on all cores, the broker and the client on the same cores.

Throughput of flightd is jobs per second from the first submission to the last result, with
``--window`` jobs outstanding, each journaled, acknowledged, run, journaled again and published
through a loopback Mosquitto. Bare and flightd alternate ``--rounds`` times; the best of each is
kept. ``rss_mb`` is flightd's peak resident memory (VmHWM) with the INT8 model loaded, after the
1-tile shared run. The CPU it ran on is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.harness import REPO, cpu_info, progress, report, rig
from ground.client import GroundClient

MODEL = "tile-int8"


def bare_per_s(model: str, n: int, threads: int, x: np.ndarray, cpu: int | None = None) -> float:
    """Runs per second of a bare ``session.run`` loop; ``cpu``: on a thread pinned to that CPU."""
    rate: list[float] = []

    def loop() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
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
        rate.append(n / (time.perf_counter() - t0))

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    return rate[0]


async def flightd_per_s(
    model: str, n: int, threads: int, window: int, x: np.ndarray, input_name: str,
    inference_cpu: int | None = None, shell_cpus: set[int] | None = None,
) -> tuple[float, dict[str, float]]:
    """flightd's jobs per second, its memory, control slip and (pinned) shell CPU ms per job."""
    settings = {} if inference_cpu is None else {"ORBITD_EXECUTOR__INFERENCE_CPUS": json.dumps([inference_cpu])}
    async with (
        rig(model, threads=threads, settings=settings, shell_cpus=shell_cpus) as r,
        GroundClient(r.broker.url, "bench", timeout_s=120) as ground,
    ):
        await ground.track_all_jobs()
        slots = asyncio.Semaphore(window)

        async def one() -> None:
            async with slots:
                job = await ground.submit(model, {input_name: x})
                await ground.wait_result(job.job_id, ack=False)

        await asyncio.gather(*(one() for _ in range(20)))  # warm-up
        exclude = None if inference_cpu is None else {inference_cpu}
        cpu0 = r.cpu_s(exclude)
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        rate = n / (time.perf_counter() - t0)
        shell_ms = (r.cpu_s(exclude) - cpu0) * 1e3 / n
        health = await ground.ping()
        return rate, {**r.rss_mb(), "shell_core_ms_per_job": shell_ms,
                      "control_max_slip_ms": float(health.get("control_max_slip_ms", float("nan")))}


def tiles(model: str, batch: int) -> tuple[np.ndarray, str]:
    manifest = json.loads((REPO / "models" / model / "1.0.0" / "manifest.json").read_text())
    spec = manifest["inputs"][0]
    shape = [d if isinstance(d, int) else batch for d in spec["shape"]]
    return np.random.default_rng(0).random(shape, dtype=np.float32), spec["name"]


def compare(model: str, n: int, threads: int, window: int, batch: int, rounds: int, label: str,
            inference_cpu: int | None = None, shell_cpus: set[int] | None = None) -> dict[str, Any]:
    """Alternate the bare loop and flightd ``rounds`` times; the best of each, and flightd's figures."""
    x, input_name = tiles(model, batch)
    bare, flight, extra = [], [], {}
    for i in range(rounds):
        progress(f"bench.overhead {label} round {i + 1}/{rounds}: bare loop")
        bare.append(bare_per_s(model, n, threads, x, inference_cpu))
        progress(f"bench.overhead {label} round {i + 1}/{rounds}: flightd")
        rate, figures = asyncio.run(
            flightd_per_s(model, n, threads, window, x, input_name, inference_cpu, shell_cpus))
        flight.append(rate)
        if rate >= max(flight):
            extra = figures
    return {
        "bare_per_s": round(max(bare), 1),
        "flightd_per_s": round(max(flight), 1),
        "ratio": round(max(flight) / max(bare), 4),
        "bare_rounds": [round(v, 1) for v in bare],
        "flightd_rounds": [round(v, 1) for v in flight],
        "tiles_per_job": batch,
        "threads": threads,
        "n": n,
        "shell_core_ms_per_job": round(extra.get("shell_core_ms_per_job", float("nan")), 3),
        "rss_mb": round(extra.get("VmHWM", float("nan")), 1),
        "control_max_slip_ms": round(extra.get("control_max_slip_ms", float("nan")), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-n", type=int, default=1000, help="jobs per 1-tile round (a sixth of it at 16 tiles)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of the shared runs")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternate bare and flightd this many times")
    parser.add_argument("--model", default=MODEL, help="bundled model (default: the INT8 tile model)")
    parser.add_argument("--only", choices=("fair", "shared"), help="one of the two measurements")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"model": args.model, "window": args.window}
    cpus = sorted(os.sched_getaffinity(0))
    if args.only != "shared":
        if len(cpus) < 2:
            result["fair"] = "needs two CPUs"
        else:
            inference_cpu, shell = cpus[-1], set(cpus[:-1])
            os.sched_setaffinity(0, shell)  # this process (the client) on the shell's CPU(s)
            try:
                fair = compare(args.model, args.n, 1, args.window, 1, args.rounds, "fair", inference_cpu, shell)
            finally:
                os.sched_setaffinity(0, set(cpus))
            result.update(fed_ratio=fair["ratio"], shell_core_ms_per_job=fair["shell_core_ms_per_job"],
                          fair={**fair, "inference_cpu": inference_cpu, "shell_cpus": sorted(shell)})
    if args.only != "fair":
        one = compare(args.model, args.n, args.threads, args.window, 1, args.rounds, "shared 1 tile")
        sixteen = compare(args.model, max(args.n // 6, 20), args.threads, args.window, 16, args.rounds,
                          "shared 16 tiles")
        result.update(ratio=one["ratio"], ratio_16=sixteen["ratio"], rss_mb=one["rss_mb"],
                      shared_1=one, shared_16=sixteen)
    result["cpu"] = cpu_info()
    result["loadavg"] = os.getloadavg()
    report(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
