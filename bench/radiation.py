"""Soft errors against a running flightd: fault injection, scrubbing, redundant execution, and redundancy
scheduled by orbit (issue 15).

    python -m bench.radiation --json [--quick] [--weight-flips 150] [--run-faults 150] [--no-in-process]

Mosquitto and flightd run as real processes (bench.harness.rig); flightd holds tile-fp32 and
digits-fp32's weights (two replicas each, scrubbed every ``--scrub-period`` s, 10 s by default: its
default) and keeps tile-int8 pre-packed (DMR on independent ONNX Runtime sessions); its TEST-ONLY
``inject_fault`` command is on. The ground truth is each model's clean result from flightd itself.

- **weight flips** (``weight_flips``): in batches, each flip at a uniform random time within one scrub
  period, single-bit, 2-8 bits in one 64-bit word or 2-8 bits anywhere (a third each), in a random
  replica of a random held model. ``detected_within_scrub``: flips whose every block appears in a
  ``soft_error`` event within one scrub period of the flip (flightd's clock on both); after the batch,
  one DMR job per held model must agree with the clean result (``corrected_before_next_run``).
- **run faults** (``run_faults``, per mode none/dmr/tmr): one fault per job, uniform over the weights
  (a persistent flip in a random replica of a held model), the run's input copy and its outputs, of the
  same three shapes; tile-int8 (not held) takes input and output faults. A fault *changes* the result
  when the job's answer differs from the clean one or its runs disagreed; ``detected_dmr``: of those
  under DMR, how many the comparison caught (voted, or failed with no majority); ``escaped``: a
  changed answer returned without a flag, per mode; ``escape_rate``: escaped over faults. After a
  weight fault, a TMR job of that model makes flightd check and repair its replicas before the next trial.
- **overheads**: ``overhead_dmr`` / ``overhead_tmr``: least busy time (``JobResult.run_ms``) of clean
  tile-fp32 jobs under dmr / tmr over none's, interleaved rounds (the least: other work on a shared
  machine only adds; medians are reported too); TMR on two replicas includes the check of both before
  its third run; ``overhead_scrub``: flightd's scrubbing CPU
  time over the wall time of the campaign (``soft_errors.scrub_cpu_s``), as a share of one core, at the
  scrub period used; ``overhead_selective``: a 24 h ``hil sil`` run (nominal orbit, governor raising
  jobs to DMR where the plant's flux proxy exceeds 1): core-seconds of redundant runs over those of
  first runs, i.e. the extra energy of selective DMR as a share of DMR everywhere's (which is 100 %);
  with the same share from the environment table alone (jobs spread evenly over the day);
  ``escape_rate_selective``: derived, not injected (:func:`selective_escape_rate`).
- ``in_process``: bench.radiation_inprocess's figures (ownership, ABFT, thousands of faults), unless
  ``--no-in-process``.

Prints the CPU it ran on; quote ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench import radiation_inprocess as inprocess
from bench.harness import cpu_info, progress, rig
from flight.radiation.redundancy import same
from ground.client import FetchedResult, GroundClient, GroundError, JobFailed
from link.messages import Event, EventKind, FaultTarget, InjectFault, Redundancy, Telemetry

HELD = ("tile-fp32", "digits-fp32")
PREPACKED = ("tile-int8",)
MODELS = HELD + PREPACKED
KINDS = inprocess.KINDS
SAT = "bench"
Arrays = dict[str, np.ndarray[Any, Any]]


def flightd_env(period_s: float) -> dict[str, str]:
    radiation = {"scrub_period_s": period_s, "suspect_results": "rerun", "test_fault_injection": True,
                 "models": {m: {"owned_weights": True, "replicas": 2} for m in HELD}}
    return {"ORBITD_RADIATION": json.dumps(radiation), "ORBITD_EXECUTOR__PRELOAD": json.dumps(list(MODELS)),
            "ORBITD_LINK__HEARTBEAT_S": "1.0"}


def feeds(model: str) -> Arrays:
    name, shape = inprocess.INPUTS[model]
    return {name: np.random.default_rng(11).random(shape, dtype=np.float32)}


def shape(rng: np.random.Generator) -> tuple[str, int]:
    """A fault's shape (:data:`KINDS`, uniform) and bit count: 1, or 2-8."""
    kind = KINDS[int(rng.integers(0, len(KINDS)))]
    return kind, 1 if kind == "single" else int(rng.integers(2, 9))


@dataclass
class Listener:
    """flightd's soft_error events (at_utc, blocks found) and its latest soft_errors counters."""

    found: list[tuple[float, set[tuple[str, int, int]]]] = field(default_factory=list)
    soft: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    async def run(self, ground: GroundClient) -> None:
        await asyncio.gather(self._events(ground), self._soft(ground))

    async def _events(self, ground: GroundClient) -> None:
        async for event in ground.watch_messages(ground.topics.events, Event):
            blocks = event.details.get("blocks") if event.kind is EventKind.SOFT_ERROR else None
            if isinstance(blocks, list):
                self.found.append((event.at_utc, {(b["model"], b["replica"], b["block"]) for b in blocks}))

    async def _soft(self, ground: GroundClient) -> None:
        async for sample in ground.watch_messages(ground.topics.telemetry("soft_errors"), Telemetry):
            self.soft.append((sample.at_utc or time.time(), dict(sample.values)))

    def detected_at(self, key: tuple[str, int, int], after: float) -> float | None:
        return min((at for at, keys in self.found if at >= after and key in keys), default=None)


async def job(ground: GroundClient, model: str, mode: Redundancy | None = None) -> FetchedResult | None:
    """One job of ``model`` on its fixed input; None when it failed (runs with no majority)."""
    try:
        submitted = await ground.submit(model, feeds(model), redundancy=mode)
        return await ground.wait_result(submitted.job_id, timeout_s=120)
    except JobFailed:
        return None


# ---------------------------------------------------------------------------------------- weight flips


async def weight_flips(ground: GroundClient, listen: Listener, golden: dict[str, Arrays], count: int,
                       period_s: float, rng: np.random.Generator) -> dict[str, Any]:
    per_batch = 15
    out: dict[str, Any] = {"weight_flips": 0, "weight_flip_bits": 0, "detected_within_scrub": 0,
                           "detected": 0, "corrected_before_next_run": 0, **{f"weight_flips_{k}": 0 for k in KINDS}}
    latencies: list[float] = []
    while out["weight_flips"] < count:
        batch = []
        start = time.monotonic()
        for at in sorted(rng.uniform(0.0, period_s, min(per_batch, count - out["weight_flips"]))):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            model = HELD[int(rng.integers(0, len(HELD)))]
            kind, bits = shape(rng)
            reply = await ground.command(InjectFault(target=FaultTarget.WEIGHTS, model=model, bits=bits,
                                                     adjacent=kind == "adjacent", seed=int(rng.integers(1 << 31))))
            flip = reply["flips"][0]
            keys = {(reply["model"], flip["replica"], b["block"]) for b in flip["bits"]}
            batch.append((model, float(reply["at_utc"]), keys))
            out["weight_flips"] += 1
            out["weight_flip_bits"] += len(flip["bits"])
            out[f"weight_flips_{kind}"] += 1
        deadline = time.monotonic() + 3 * period_s
        while time.monotonic() < deadline and not all(
                listen.detected_at(k, at) is not None for _, at, keys in batch for k in keys):
            await asyncio.sleep(0.2)
        clean = {}
        for model in HELD:  # the next run after the repair reads both replicas: they must agree, clean
            checked = await job(ground, model, Redundancy.DMR)
            clean[model] = (checked is not None and checked.result.check == "agreed"
                            and same(checked.outputs, golden[model]))
        for model, at, keys in batch:
            found = [listen.detected_at(k, at) for k in keys]
            if all(f is not None for f in found):
                latency = max(float(f) for f in found if f is not None) - at
                latencies.append(latency)
                out["detected"] += 1
                out["detected_within_scrub"] += latency <= period_s
            out["corrected_before_next_run"] += clean[model]
        progress(f"  weight flips: {out['weight_flips']}/{count}, detected {out['detected']}, "
                 f"max latency {max(latencies, default=0.0):.2f} s")
    out["detected_within_scrub_share"] = round(out["detected_within_scrub"] / max(1, out["weight_flips"]), 4)
    out["weight_flip_latency_max_s"] = round(max(latencies, default=float("nan")), 3)
    out["weight_flip_latency_mean_s"] = round(statistics.fmean(latencies), 3) if latencies else None
    return out


# ------------------------------------------------------------------------------------------ run faults


async def run_faults(ground: GroundClient, golden: dict[str, Arrays], per_mode: int,
                     rng: np.random.Generator) -> dict[str, dict[str, int]]:
    places = {m: ("weights", "input", "output") if m in HELD else ("input", "output") for m in MODELS}
    counts: dict[str, dict[str, int]] = {}
    for mode in (Redundancy.NONE, Redundancy.DMR, Redundancy.TMR):
        c = counts.setdefault(mode.value, dict.fromkeys(
            ("faults", "changed", "detected", "escaped", "failed", *(f"changed_{p}" for p in ("weights", "input",
                                                                                          "output"))), 0))
        for _ in range(per_mode):
            model = MODELS[int(rng.integers(0, len(MODELS)))]
            place = places[model][int(rng.integers(0, len(places[model])))]
            kind, bits = shape(rng)
            target = {"weights": FaultTarget.WEIGHTS, "input": FaultTarget.RUN_INPUT,
                      "output": FaultTarget.RUN_OUTPUT}[place]
            await ground.command(InjectFault(target=target, model=model, bits=bits, adjacent=kind == "adjacent",
                                             seed=int(rng.integers(1 << 31))))
            fetched = await job(ground, model, mode)
            c["faults"] += 1
            if fetched is None:  # no majority: failed, never answered
                detected, escaped = True, False
                c["failed"] += 1
            else:
                detected = fetched.result.check == "voted"
                escaped = not same(fetched.outputs, golden[model])
            changed = detected or escaped
            c["changed"] += changed
            c["detected"] += detected
            c["escaped"] += escaped
            c[f"changed_{place}"] += changed
            if place == "weights":  # the TMR vote's check repairs the flip before the next trial
                await job(ground, model, Redundancy.TMR)
        progress(f"  run faults under {mode.value}: {c}")
    return counts


# ------------------------------------------------------------------------------------------- overheads


async def redundancy_overhead(ground: GroundClient, rounds: int) -> dict[str, Any]:
    """Least (and median) busy time of clean jobs under each mode over none's, interleaved rounds."""
    out: dict[str, Any] = {}
    for model in ("tile-fp32", "tile-int8"):
        times: dict[Redundancy, list[float]] = {m: [] for m in Redundancy}
        for mode in Redundancy:  # warm-up: every session a mode reads is built (on its first run) here
            await job(ground, model, mode)
        for _ in range(rounds):
            for mode in Redundancy:
                fetched = await job(ground, model, mode)
                if fetched is not None:
                    times[mode].append(fetched.result.run_ms)
        key = model.replace("-", "_")
        out[f"run_ms_{key}_least"] = {m.value: round(min(v), 3) for m, v in times.items()}
        out[f"run_ms_{key}_median"] = {m.value: round(statistics.median(v), 3) for m, v in times.items()}
        for mode in (Redundancy.DMR, Redundancy.TMR):
            out[f"overhead_{mode.value}_{key}"] = round(min(times[mode]) / min(times[Redundancy.NONE]) - 1.0, 3)
    return out


def scrub_overhead(listen: Listener, period_s: float) -> dict[str, Any]:
    first, last = listen.soft[0], listen.soft[-1]
    wall = last[0] - first[0]
    cpu = last[1].get("scrub_cpu_s", 0.0) - first[1].get("scrub_cpu_s", 0.0)
    return {"scrub_period_s": period_s, "scrub_weight_bytes": int(last[1].get("weight_bytes", 0)),
            "scrub_window_s": round(wall, 1), "scrub_cpu_s": round(cpu, 4),
            "overhead_scrub": round(cpu / wall, 5) if wall > 0 else None}


async def selective(warp: float) -> dict[str, Any]:
    """24 h of the nominal orbit in ``hil sil`` (no injection): redundant over first-run core-seconds."""
    from hil.scenario import load_scenario
    from hil.sil import run_sil

    period_s = load_scenario("nominal-550km").build_plant().linear_parameters().period_s
    with tempfile.TemporaryDirectory(prefix="orbitd-bench-sil-") as tmp:
        report = await run_sil("nominal-550km", orbits=86400.0 / period_s, warp=warp, report_dir=Path(tmp),
                               progress=False)
    r = report.radiation or {}
    return {"selective_sil_warp": warp, "selective_sil_jobs_done": report.jobs_done,
            "selective_sil_wall_s": round(report.wall_s, 1), "selective_high_flux_share_sil": r.get("high_flux_share"),
            "selective_checked_jobs": r.get("jobs", {}).get("checked"),
            "overhead_selective": round(float(r.get("redundant_energy_share", math.nan)), 4)}


def selective_escape_rate(escape_rate: dict[str, float], unchecked_share: float) -> float:
    """Escape rate of selective redundancy, derived (not injected): a fault lands in a job run unchecked
    with the share of the day's upsets outside the high-flux regions (``unchecked_share``, from the
    environment table) and escapes there at none's measured rate; inside, at DMR's."""
    return round(unchecked_share * escape_rate["none"] + (1.0 - unchecked_share) * escape_rate["dmr"], 4)


# ------------------------------------------------------------------------------------------------ main


async def live(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(2026)
    out: dict[str, Any] = {}
    async with rig(MODELS[0], settings=flightd_env(args.scrub_period)) as bench_rig, \
            GroundClient(bench_rig.broker.url, SAT, timeout_s=30.0) as ground:
        listen = Listener()
        listener = asyncio.create_task(listen.run(ground))
        try:
            golden: dict[str, Arrays] = {}
            for model in MODELS:
                first = await job(ground, model)
                assert first is not None and first.result.check == "single"
                golden[model] = first.outputs
            progress(f"weight flips ({args.weight_flips}, scrub period {args.scrub_period:g} s)...")
            out.update(await weight_flips(ground, listen, golden, args.weight_flips, args.scrub_period, rng))
            progress(f"run faults ({args.run_faults} per mode)...")
            faults = await run_faults(ground, golden, args.run_faults, rng)
            progress("redundancy overheads...")
            out.update(await redundancy_overhead(ground, args.rounds))
            await asyncio.sleep(2.0)  # the last soft_errors sample
            out.update(scrub_overhead(listen, args.scrub_period))
            out["flightd_soft_errors"] = listen.soft[-1][1] if listen.soft else {}
        finally:
            listener.cancel()
    dmr = faults["dmr"]
    out["run_faults"] = sum(c["faults"] for c in faults.values())
    out["run_faults_by_mode"] = faults
    out["run_faults_changing_result_dmr"] = dmr["changed"]
    out["detected_dmr"] = dmr["detected"]
    out["detected_dmr_share"] = round(dmr["detected"] / max(1, dmr["changed"]), 4)
    out["escaped"] = {m: c["escaped"] for m, c in faults.items()}
    out["escape_rate"] = {m: round(c["escaped"] / max(1, c["faults"]), 4) for m, c in faults.items()}
    out["overhead_dmr"] = out["overhead_dmr_tile_fp32"]
    out["overhead_tmr"] = out["overhead_tmr_tile_fp32"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--weight-flips", type=int, default=150)
    parser.add_argument("--run-faults", type=int, default=150, help="run faults per mode (none, dmr, tmr)")
    parser.add_argument("--scrub-period", type=float, default=10.0, help="flightd's scrub period, s")
    parser.add_argument("--rounds", type=int, default=15, help="clean jobs per mode for the overheads")
    parser.add_argument("--selective-warp", type=float, default=1000.0, help="hil sil warp of the 24 h run")
    parser.add_argument("--no-selective", action="store_true", help="skip the 24 h hil sil run")
    parser.add_argument("--no-in-process", action="store_true", help="skip bench.radiation_inprocess")
    parser.add_argument("--quick", action="store_true", help="30 flips, 20 faults per mode, 5 rounds, warp 3000")
    args = parser.parse_args(argv)
    if args.quick:
        args.weight_flips, args.run_faults, args.rounds, args.selective_warp = 30, 20, 5, 3000.0
    result: dict[str, Any] = {"cpu": cpu_info(), "onnxruntime": ort.__version__}
    result.update(asyncio.run(live(args)))
    table = inprocess.selective(result["overhead_dmr"], 1.0)
    result.update({k: v for k, v in table.items() if k != "overhead_selective"})
    result["overhead_selective_table"] = table["overhead_selective"]
    result["escape_rate_selective"] = selective_escape_rate(result["escape_rate"], table["escape_share_selective"])
    if not args.no_selective:
        progress(f"selective redundancy: 24 h of the nominal orbit in hil sil at warp {args.selective_warp:g}...")
        result.update(asyncio.run(selective(args.selective_warp)))
    if not args.no_in_process:
        progress("in-process campaign (bench.radiation_inprocess)...")
        quick = args.quick
        result["in_process"] = inprocess.run(30 if quick else 150, 30 if quick else 150, 0.5 if quick else 2.0, 1.0)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:40s} {value}")
    ok = result["detected_within_scrub"] == result["weight_flips"] and result["escaped"]["dmr"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GroundError as exc:
        print(f"bench.radiation: {exc}", file=sys.stderr)
        sys.exit(2)
