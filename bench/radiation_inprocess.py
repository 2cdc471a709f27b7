"""Soft errors in process: fault-injection campaigns against flight.radiation's modules (owned weights,
scrubbing, redundant execution, algorithm-based checks) on real ONNX Runtime sessions, no flightd.

    python -m bench.radiation_inprocess --json [--weight-flips 200] [--run-faults 200] [--seconds 2] [--quick]

The fast part of ``python -m bench.radiation`` (which drives a running flightd and includes these figures
under ``in_process``): what ONNX Runtime copies, the cost of owned weights per model, ABFT against
duplication, thousands of faults in a minute.

- **ownership**: per bundled model, how many initializers the session reads from our memory with the
  store's options, and with ORT's defaults; CPU time per inference with the store's options against
  ORT's defaults (ALL + pre-packing).
- **weight flips**: uniform random bits (half single-bit, half 2-8 bits) in a replica's weights at a
  random time; a :class:`Scrubber` steps every second at its default period; counts flips detected within
  one period (+ one step) and results equal to the clean result on the first run after the repair.
- **run faults**: one fault per checked job, uniform over the weights (flipped for that run only), the
  input and the outputs of one of its runs, single or multiple bits; per mode (none, dmr, tmr, abft) counts
  results changed (bitwise), detected and escaped (a wrong answer returned without a flag), and the same
  for significant changes (an output off by more than 0.1 % of the largest clean output).
- **overheads**: CPU time per checked inference of tile-fp32 under DMR, TMR, ABFT (all convolutions and
  the final Gemm; the final Gemm alone) against one unchecked run, 1-thread sessions timed by the
  calling thread's CPU clock (robust to other load on a shared machine), least of 5 alternating rounds; scrubbing
  CPU time per period as a fraction of one core, and ``overhead_selective``: DMR only where the plant's
  flux proxy exceeds a threshold over 24 h of the nominal scenario, as a share of DMR everywhere (jobs
  spread evenly over the day), with the share of upsets (flux-weighted time) it covers.

Prints the CPU model and flags it ran on; quote ratios from one run (boards-and-runtime.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.harness import cpu_info
from flight.radiation.abft import ModelChecksums
from flight.radiation.injection import pick_bits
from flight.radiation.redundancy import replica_for, run_checked, same
from flight.radiation.scrubber import DEFAULT_PERIOD_S, Scrubber
from flight.radiation.weights import WeightStore, ownership_probe
from link.messages import Redundancy

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
INPUTS = {"tile-fp32": ("tile", (1, 3, 128, 128)), "tile-int8": ("tile", (1, 3, 128, 128)),
          "digits-fp32": ("image", (1, 1, 8, 8)), "digits-int8": ("image", (1, 1, 8, 8))}
Arrays = dict[str, np.ndarray[Any, Any]]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_bytes(name: str) -> bytes:
    """A bundled model's file (tests/test_radiation_*.py use these two helpers too)."""
    return (MODELS / name / "1.0.0" / "model.onnx").read_bytes()


def verified_reload(name: str) -> bytes:
    """The registry's job: the model file's bytes, trusted only if their sha256 matches the manifest."""
    directory = MODELS / name / "1.0.0"
    data = (directory / "model.onnx").read_bytes()
    if hashlib.sha256(data).hexdigest() != json.loads((directory / "manifest.json").read_text())["sha256"]:
        raise ValueError(f"{name}: sha256 mismatch")
    return data


def options(threads: int, owned: WeightStore | None = None, replica: int = 0) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 4
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return owned.session_options(replica, opts) if owned is not None else opts


def feeds_for(name: str, rng: np.random.Generator) -> Arrays:
    input_name, shape = INPUTS[name]
    return {input_name: rng.random(shape, dtype=np.float32)}


def cpu_per_call(fn: Callable[[], Any], seconds: float) -> float:
    """CPU seconds of this thread per call of ``fn`` (ORT runs a 1-thread session on the caller's thread)."""
    fn()
    n, wall, cpu = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - wall < seconds:
        fn()
        n += 1
    return (time.thread_time() - cpu) / n


def alternate(fns: dict[str, Callable[[], Any]], seconds: float, rounds: int = 5) -> dict[str, float]:
    """Least CPU s per call of each function over ``rounds`` alternating rounds. CPU time of the calling
    thread does not count the time other work on a shared machine takes the core away."""
    cost: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            cost[key].append(cpu_per_call(fn, seconds / rounds / len(fns)))
    return {k: min(v) for k, v in cost.items()}


# ---------------------------------------------------------------------------------------- ownership


def ownership(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = np.random.default_rng(1)
    for name in INPUTS:
        data = model_bytes(name)
        store = WeightStore(name, data)
        feeds = feeds_for(name, rng)
        owned = ort.InferenceSession(data, options(1, store), providers=["CPUExecutionProvider"])
        live = ownership_probe(store, 0, lambda s=owned, f=feeds: s.run(None, f))
        plain_store = WeightStore(name, data)
        plain_opts = options(1)
        for key, value in plain_store._replicas[0].values.items():
            plain_opts.add_initializer(key, value)
        plain = ort.InferenceSession(data, plain_opts, providers=["CPUExecutionProvider"])
        live_plain = ownership_probe(plain_store, 0, lambda s=plain, f=feeds: s.run(None, f))
        default = ort.InferenceSession(data, options(1), providers=["CPUExecutionProvider"])
        cost = alternate({"owned": lambda s=owned, f=feeds: s.run(None, f),
                          "default": lambda s=default, f=feeds: s.run(None, f)}, seconds)
        key = name.replace("-", "_")
        out[f"{key}_tensors"] = len(live)
        out[f"{key}_read_from_owned"] = sum(live.values())
        out[f"{key}_read_from_owned_ort_defaults"] = sum(live_plain.values())
        out[f"{key}_cpu_ms_owned"] = round(cost["owned"] * 1e3, 4)
        out[f"{key}_cpu_ms_default"] = round(cost["default"] * 1e3, 4)
        out[f"{key}_owned_cost_ratio"] = round(cost["owned"] / cost["default"], 3)
        _log(f"ownership {name}: {sum(live.values())}/{len(live)} tensors read from owned memory "
             f"(ORT defaults: {sum(live_plain.values())}); {cost['owned'] * 1e3:.3f} vs "
             f"{cost['default'] * 1e3:.3f} CPU ms per inference")
    return out


# ---------------------------------------------------------------------------------------- campaigns


KINDS = ("single", "adjacent", "scattered")
"""Fault shapes: one bit; 2-8 bits inside one 64-bit word (a multiple-cell upset: Alsat-1 saw 1.4 % of its
upsets hit more than one bit, Bentoutou 2012); 2-8 bits anywhere (several upsets within one period)."""


def _bits(rng: np.random.Generator, total_bits: int, kind: str) -> list[int]:
    """Positions of one fault of shape ``kind`` (:data:`KINDS`) among ``total_bits``."""
    count = 1 if kind == "single" else int(rng.integers(2, 9))
    return pick_bits(rng, total_bits, count, adjacent=kind == "adjacent")


WEIGHT_COUNTS = ("weight_flips", "weight_flip_bits", "detected_within_scrub", "corrected_before_next_run",
                 "weight_flips_changing_result", "repaired_from_file", "repaired_from_replica",
                 *(f"weight_flips_{k}" for k in KINDS))


def _equal(a: list[np.ndarray[Any, Any]], b: list[np.ndarray[Any, Any]]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def weight_flip_campaign(
    name: str, trials: int, rng: np.random.Generator, period_s: float, replicas: int
) -> dict[str, Any]:
    """Persistent flips in one replica, found by the scrubber stepping every second and repaired (from the
    file when the store has one replica); each trial ends when its flips are repaired or 3 periods pass."""
    store = WeightStore(name, model_bytes(name), replicas=replicas)
    sessions = [ort.InferenceSession(store.model_bytes, options(1, store, r), providers=["CPUExecutionProvider"])
                for r in range(replicas)]
    feeds = feeds_for(name, rng)
    golden = sessions[0].run(None, feeds)
    scrubber = Scrubber(reload=verified_reload, period_s=period_s)
    scrubber.add(store)
    now = 0.0
    scrubber.step(now)
    counts: dict[str, Any] = dict.fromkeys(WEIGHT_COUNTS, 0)
    latencies = []
    for _ in range(trials):
        replica = int(rng.integers(0, replicas))
        kind = KINDS[int(rng.integers(0, len(KINDS)))]
        flip_at = now + float(rng.uniform(0.0, 1.0))
        bits = _bits(rng, store.weight_bytes * 8, kind)
        for bit in bits:
            store.flip(replica, bit)
        counts["weight_flips"] += 1
        counts["weight_flip_bits"] += len(bits)
        counts[f"weight_flips_{kind}"] += 1
        counts["weight_flips_changing_result"] += not _equal(sessions[replica].run(None, feeds), golden)
        last_found = None
        while store.mismatched_blocks(replica) and now < flip_at + 3 * period_s:
            now += 1.0
            report = scrubber.step(now)
            if report.found:
                last_found = now
                counts["repaired_from_replica"] += sum(r.source == "replica" for r in report.repaired)
                counts["repaired_from_file"] += sum(r.source == "file" for r in report.repaired)
        if last_found is not None and not store.mismatched_blocks(replica):
            latencies.append(last_found - flip_at)
            counts["detected_within_scrub"] += last_found - flip_at <= period_s + 1.0
        counts["corrected_before_next_run"] += _equal(sessions[replica].run(None, feeds), golden)
    counts["max_latency_s"] = round(max(latencies), 2) if latencies else None
    return counts


PLACES = ("weights", "input", "output")
"""Where a run fault lands: the run's weight replica (for that run only), its copy of the input, its output."""


class Runner:
    """Sessions of one model over a 3-replica store (+ a checked session for ABFT), with fault hooks."""

    def __init__(self, name: str, rng: np.random.Generator) -> None:
        self.name = name
        self.store = WeightStore(name, model_bytes(name), replicas=3)
        self.sessions = [ort.InferenceSession(self.store.model_bytes, options(1, self.store, r),
                                              providers=["CPUExecutionProvider"]) for r in range(3)]
        self.names = [o.name for o in self.sessions[0].get_outputs()]
        self.check: ModelChecksums | None = None
        self.abft_session: ort.InferenceSession | None = None
        self.gemm_session: ort.InferenceSession | None = None
        if name.endswith("fp32"):
            self.check = ModelChecksums.for_model(self.store)
            self.abft_session = ort.InferenceSession(self.check.model_bytes(self.store.model_bytes),
                                                options(1, self.store, 0), providers=["CPUExecutionProvider"])
            gemm_only = ModelChecksums(None, self.check.gemm)
            self.gemm_session = ort.InferenceSession(gemm_only.model_bytes(self.store.model_bytes),
                                                     options(1, self.store, 0), providers=["CPUExecutionProvider"])
        self.rng = rng
        self.output_bytes = self.sessions[0].run(None, feeds_for(name, rng))[0].nbytes

    def run(self, session: ort.InferenceSession, feeds: Arrays, fault: tuple[str, list[int]] | None,
            replica: int) -> Arrays:
        """One run; ``fault`` = (where, bits) with where in weights, input, output."""
        names = [o.name for o in session.get_outputs()]
        if fault is None:
            return dict(zip(names, session.run(None, feeds), strict=True))
        where, bits = fault
        if where == "weights":
            for bit in bits:
                self.store.flip(replica, bit)
            try:
                return dict(zip(names, session.run(None, feeds), strict=True))
            finally:
                for bit in bits:
                    self.store.flip(replica, bit)
        if where == "input":
            feeds = {k: v.copy() for k, v in feeds.items()}
            raw = next(iter(feeds.values())).reshape(-1).view(np.uint8)
            for bit in bits:
                raw[bit // 8] ^= np.uint8(1 << (bit % 8))
            return dict(zip(names, session.run(None, feeds), strict=True))
        outputs = dict(zip(names, session.run(None, feeds), strict=True))
        raw = outputs[self.names[0]].reshape(-1).view(np.uint8)
        for bit in bits:
            raw[bit // 8] ^= np.uint8(1 << (bit % 8))
        return outputs

    def fault(self, feeds: Arrays) -> tuple[str, list[int]]:
        """Where uniform over the three places, bits uniform inside it, shape uniform over :data:`KINDS`."""
        where = PLACES[int(self.rng.integers(0, len(PLACES)))]
        size = {"weights": self.store.weight_bytes, "input": next(iter(feeds.values())).nbytes,
                "output": self.output_bytes}[where]
        return where, _bits(self.rng, size * 8, KINDS[int(self.rng.integers(0, len(KINDS)))])

    def checked(self, mode: Redundancy, feeds: Arrays, fault: tuple[str, list[int]], faulty_run: int) -> Any:
        """``mode``'s checked run with ``fault`` in run number ``faulty_run`` (run i on replica i % 3)."""
        return run_checked(mode, lambda i: self.run(
            self.sessions[replica_for(i, 3)], feeds, fault if i == faulty_run else None, replica_for(i, 3)))


SIGNIFICANT = 1e-3
"""A result changes significantly when an output moves by more than 0.1 % of the largest clean output
(or turns non-finite): bigger than any rounding difference, smaller than any decision threshold here."""


def significant(answer: Arrays, golden: Arrays) -> bool:
    for name, clean in golden.items():
        value = answer[name].astype(np.float64)
        if not np.all(np.isfinite(value)):
            return True
        scale = float(np.max(np.abs(clean))) + 1e-12
        if float(np.max(np.abs(value - clean))) > SIGNIFICANT * scale:
            return True
    return False


def run_fault_campaign(name: str, trials: int, rng: np.random.Generator) -> dict[str, Any]:
    runner = Runner(name, rng)
    modes = ["none", "dmr", "tmr"] + (["abft"] if runner.check else [])
    keys = ["faults", "changed", "detected", "escaped", "detected_changed", "significant", "detected_significant",
            "escaped_significant",
            *(f"{part}_{where}" for part in ("changed", "detected") for where in PLACES)]
    counts = {m: dict.fromkeys(keys, 0) for m in modes}
    for _ in range(trials):
        feeds = feeds_for(name, rng)
        golden = runner.run(runner.sessions[0], feeds, None, 0)
        fault = runner.fault(feeds)
        faulty = runner.run(runner.sessions[0], feeds, fault, 0)
        fault_changes = not same(faulty, golden)
        fault_matters = significant(faulty, golden)
        for mode in modes:
            c = counts[mode]
            c["faults"] += 1
            if mode == "abft":
                assert runner.check is not None and runner.abft_session is not None
                outputs = runner.run(runner.abft_session, feeds, fault, 0)
                answer: Arrays | None = {k: outputs[k] for k in golden}
                detected = not runner.check.ok(outputs)
            else:
                faulty_run = int(rng.integers(0, 2 if mode == "dmr" else 3)) if mode != "none" else 0
                result = runner.checked(Redundancy(mode), feeds, fault, faulty_run)
                answer = result.outputs
                detected = result.verdict.status in ("voted", "unresolved")
            wrong = answer is not None and not same(answer, golden)
            c["changed"] += fault_changes  # the faulty run's own result differs from the clean one
            c["detected"] += detected
            c["detected_changed"] += detected and fault_changes
            c["significant"] += fault_matters
            c["detected_significant"] += detected and fault_matters
            c["escaped_significant"] += answer is not None and significant(answer, golden) and not detected
            c[f"changed_{fault[0]}"] += fault_changes
            c[f"detected_{fault[0]}"] += detected and fault_changes
            c["escaped"] += wrong and not detected
    return counts


# ---------------------------------------------------------------------------------------- overheads


def redundancy_overheads(name: str, seconds: float, rng: np.random.Generator) -> dict[str, float]:
    runner = Runner(name, rng)
    feeds = feeds_for(name, rng)

    def single() -> None:
        runner.sessions[0].run(None, feeds)

    def dmr() -> None:
        run_checked(Redundancy.DMR, lambda i: runner.run(runner.sessions[replica_for(i, 3)], feeds, None, 0))

    def tmr() -> None:
        run_checked(Redundancy.TMR, lambda i: runner.run(runner.sessions[replica_for(i, 3)], feeds, None, 0))

    fns: dict[str, Callable[[], Any]] = {"single": single, "dmr": dmr, "tmr": tmr}
    if runner.check is not None and runner.abft_session is not None and runner.gemm_session is not None:
        check, checked, gemm_checked = runner.check, runner.abft_session, runner.gemm_session
        gemm = ModelChecksums(None, check.gemm)
        fns["abft"] = lambda: check.ok(runner.run(checked, feeds, None, 0))
        fns["abft_final_gemm"] = lambda: gemm.ok(runner.run(gemm_checked, feeds, None, 0))
    cost = alternate(fns, seconds)
    return {f"overhead_{k}": round(cost[k] / cost["single"] - 1.0, 3) for k in fns if k != "single"}


def scrub_overhead(period_s: float) -> dict[str, Any]:
    """CPU time of scrubbing the bundled models (2 replicas each) for 30 simulated periods, per period."""
    scrubber = Scrubber(reload=verified_reload, period_s=period_s)
    for name in ("tile-fp32", "tile-int8", "digits-fp32", "digits-int8"):
        scrubber.add(WeightStore(name, model_bytes(name), replicas=2))
    scrubber.step(0.0)
    periods = 30
    start = time.thread_time()
    steps = int(periods * period_s)
    for k in range(1, steps + 1):
        scrubber.step(float(k))
    cpu = time.thread_time() - start
    data = memoryview(np.random.default_rng(0).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes())
    t0 = time.thread_time()
    for i in range(0, len(data), 8192):
        zlib.crc32(data[i : i + 8192])
    crc_rate = len(data) / (time.thread_time() - t0)
    return {"scrub_period_s": period_s, "scrub_bytes_per_sweep": scrubber.bytes_per_sweep,
            "scrub_cpu_s_per_period": round(cpu / periods, 5),
            "overhead_scrub": round(cpu / (periods * period_s), 5),
            "crc32_gb_s": round(crc_rate / 1e9, 2)}


def selective(overhead_dmr: float, threshold: float) -> dict[str, Any]:
    """DMR only where flux > ``threshold`` over 24 h of the nominal scenario, against DMR everywhere."""
    from hil.plant.radiation import RadiationEnvironment, RadiationTable, field_strength_nt, ground_track_for
    from hil.scenario import load_scenario

    scenario = load_scenario("nominal-550km")
    start = time.perf_counter()
    table = RadiationTable.for_orbit(scenario.config.orbit, 86400.0, step_s=10.0, env=RadiationEnvironment())
    igrf_10s = time.perf_counter() - start
    track = ground_track_for(scenario.config.orbit, np.arange(0.0, 86400.0, 1.0))
    start = time.perf_counter()
    field_strength_nt(track)
    igrf_1s = time.perf_counter() - start
    flux = table.sample.flux
    high = flux > threshold
    time_share = float(high.mean())
    coverage = float(flux[high].sum() / flux.sum())
    return {
        "orbit": scenario.name,
        "flux_mean": round(float(flux.mean()), 4),
        "upset_rate_per_mbit_day_mean": round(float(table.sample.upset_rate_per_mbit_day.mean()), 4),
        "selective_threshold_flux": threshold,
        "selective_time_share": round(time_share, 4),
        "selective_upset_coverage": round(coverage, 4),
        # extra energy of the redundant runs, relative to DMR everywhere (100 %), jobs spread over the day
        "overhead_selective": round(time_share, 4),
        "overhead_selective_measured_dmr": round(time_share * overhead_dmr, 4),
        "escape_share_selective": round(1.0 - coverage, 4),
        "igrf_day_10s_s": round(igrf_10s, 3),
        "igrf_day_1s_s": round(igrf_1s, 3),
    }


def run(weight_flips: int, run_faults: int, seconds: float, threshold: float) -> dict[str, Any]:
    rng = np.random.default_rng(2026)
    result: dict[str, Any] = {"cpu": cpu_info(), "onnxruntime": ort.__version__, "intra_op_threads": 1}
    _log("ownership...")
    result.update(ownership(seconds))
    totals: dict[str, Any] = dict.fromkeys(WEIGHT_COUNTS, 0)
    for name, replicas in (("tile-fp32", 1), ("tile-int8", 1), ("digits-fp32", 2)):
        _log(f"weight flips {name}...")
        c = weight_flip_campaign(name, weight_flips // 3, rng, DEFAULT_PERIOD_S, replicas)
        for key in WEIGHT_COUNTS:
            totals[key] += c[key]
        result[f"weight_flip_max_latency_s_{name.replace('-', '_')}"] = c["max_latency_s"]
    result.update(totals)
    result["detected_within_scrub_share"] = round(totals["detected_within_scrub"] / totals["weight_flips"], 4)
    modes: dict[str, dict[str, int]] = {}
    for name in ("tile-fp32", "digits-fp32", "digits-int8"):  # abft: the two fp32 models only
        _log(f"run faults {name}...")
        for mode, c in run_fault_campaign(name, run_faults // 3, rng).items():
            agg = modes.setdefault(mode, {k: 0 for k in c})
            for k, v in c.items():
                agg[k] += v
    result["run_faults"] = modes["dmr"]["faults"]
    result["run_faults_changing_result"] = modes["dmr"]["changed"]
    result["detected_dmr"] = modes["dmr"]["detected_changed"]
    result["detected_dmr_share"] = round(modes["dmr"]["detected_changed"] / max(1, modes["dmr"]["changed"]), 4)
    result["escaped"] = {m: c["escaped"] for m, c in modes.items()}
    result["escape_rate"] = {m: round(c["escaped"] / max(1, c["faults"]), 4) for m, c in modes.items()}
    for mode in ("dmr", "abft"):
        c = modes[mode]
        result[f"detected_{mode}_by_place"] = {
            where: f"{c[f'detected_{where}']}/{c[f'changed_{where}']}" for where in PLACES}
    result["detected_abft_share"] = round(modes["abft"]["detected_changed"] / max(1, modes["abft"]["changed"]), 4)
    result["run_faults_significant"] = {m: c["significant"] for m, c in modes.items()}
    result["detected_significant"] = {m: c["detected_significant"] for m, c in modes.items()}
    result["escaped_significant"] = {m: c["escaped_significant"] for m, c in modes.items()}
    _log("overheads...")
    over = redundancy_overheads("tile-fp32", seconds, rng)
    result.update({f"{k}_tile_fp32": v for k, v in over.items()})
    result["overhead_dmr"] = over["overhead_dmr"]
    result.update(scrub_overhead(DEFAULT_PERIOD_S))
    _log("selective redundancy over the nominal orbit...")
    result.update(selective(result["overhead_dmr"], threshold))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--weight-flips", type=int, default=150, help="weight flips over three models")
    parser.add_argument("--run-faults", type=int, default=150, help="run faults per mode over three models")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per throughput figure (s)")
    parser.add_argument("--threshold", type=float, default=1.0, help="flux above which selective mode runs DMR")
    parser.add_argument("--quick", action="store_true", help="30 flips, 30 faults, 0.5 s timings")
    args = parser.parse_args(argv)
    if args.quick:
        args.weight_flips, args.run_faults, args.seconds = 30, 30, 0.5
    result = run(args.weight_flips, args.run_faults, args.seconds, args.threshold)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:40s} {value}")
    return 0 if math.isfinite(float(result["overhead_dmr"])) else 1


if __name__ == "__main__":
    sys.exit(main())
