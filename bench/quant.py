"""FP32 vs INT8 (static QDQ) of the bundled models: throughput at 1 and 2 threads, digits accuracy.

    python -m bench.quant --json [--seconds 4.0] [--rounds 5]

Throughput is batch 1, ONNX Runtime CPU sessions with explicit ``intra_op_num_threads`` and
``session.intra_op.allow_spinning = "0"`` (ground.model.quantize.make_session). Each figure is the best
of ``rounds`` measurements of ``seconds / rounds`` s, FP32 and INT8 alternating so that background
load hits both alike; the best run is the usual estimate of undisturbed speed (as ``timeit``
advises) on a machine other work shares. ``*_median`` keys give the median speedup as well.
Accuracy is top-1 on the 360 held-out digits of ground.model.datasets.digits_split (the split the
model was trained with; those images were seen neither in training nor in calibration).

Reference (/work/shared/reference/boards-and-runtime.md): a 7-conv 2.3 M-parameter CNN ran 184 FP32
vs 496 INT8 inf/s at 2 threads on the development machine (2.7x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ground.model.datasets import digits_split, synthetic_tiles
from ground.model.quantize import make_session, measure_throughput
from link.manifest import MODEL_FILE
from tools.build_models import MODELS_DIR, VERSION

THREADS = (1, 2)


def _path(name: str) -> Path:
    return MODELS_DIR / name / VERSION / MODEL_FILE


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def throughput_pair(
    family: str, feeds: dict[str, Any], threads: int, seconds: float, rounds: int
) -> tuple[list[float], list[float]]:
    """Per-round (FP32, INT8) inf/s of ``<family>-fp32`` and ``<family>-int8`` at ``threads``."""
    fp32 = make_session(_path(f"{family}-fp32"), threads)
    int8 = make_session(_path(f"{family}-int8"), threads)
    per = seconds / rounds
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(measure_throughput(fp32, feeds, per))
        b.append(measure_throughput(int8, feeds, per))
    return a, b


def digits_accuracy(name: str) -> float:
    """Held-out top-1 accuracy of ``name`` (digits-fp32 or digits-int8)."""
    split = digits_split()
    logits = make_session(_path(name), 2).run(None, {"image": split.x_test})[0]
    return float(np.mean(np.argmax(logits, axis=1) == split.y_test))


def run(seconds: float, rounds: int) -> dict[str, Any]:
    """All figures as one flat dict."""
    result: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "batch": 1,
        "seconds_per_figure": seconds,
    }
    split = digits_split()
    inputs = {
        "digits": {"image": split.x_test[:1]},
        "tile": {"tile": synthetic_tiles(1, seed=3)[0]},
    }
    for family, feeds in inputs.items():
        for threads in THREADS:
            _log(f"{family}: {threads} thread(s)...")
            fp32, int8 = throughput_pair(family, feeds, threads, seconds, rounds)
            result[f"{family}_fp32_inf_s_{threads}t"] = round(max(fp32), 1)
            result[f"{family}_int8_inf_s_{threads}t"] = round(max(int8), 1)
            result[f"{family}_int8_speedup_{threads}t"] = round(max(int8) / max(fp32), 3)
            median = statistics.median(i / f for f, i in zip(fp32, int8, strict=True))
            result[f"{family}_int8_speedup_{threads}t_median"] = round(median, 3)
    for family in inputs:
        fp32_size = _path(f"{family}-fp32").stat().st_size
        int8_size = _path(f"{family}-int8").stat().st_size
        result[f"{family}_fp32_bytes"] = fp32_size
        result[f"{family}_int8_bytes"] = int8_size
    acc32 = digits_accuracy("digits-fp32")
    acc8 = digits_accuracy("digits-int8")
    result["digits_held_out"] = len(split.y_test)
    result["digits_acc_fp32"] = round(acc32, 4)
    result["digits_acc_int8"] = round(acc8, 4)
    result["digits_acc_drop"] = round(acc32 - acc8, 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--seconds", type=float, default=4.0, help="timing budget per figure (s)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating FP32/INT8 rounds per figure")
    args = parser.parse_args(argv)
    result = run(args.seconds, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
