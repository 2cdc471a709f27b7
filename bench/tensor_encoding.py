"""Encode + decode cost and size of a job request in each link encoding (framed vs JSON + base64).

``python -m bench.tensor_encoding --json`` prints one JSON object: per encoding and tensor, the
microseconds to encode a JobRequest to bytes and to decode it back to a numpy array, and the size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np

from link.codec import decode, encode, pack_tensors, unpack_tensors
from link.messages import JobRequest

TENSORS = {
    "digits_1x1x8x8_f32": np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32),
    "tile_1x3x128x128_f32": np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32),
    "tile_1x3x512x512_u8": np.random.default_rng(0).integers(0, 255, (1, 3, 512, 512), dtype=np.uint8),
}


def best_us(fn: Callable[[], object], seconds: float = 0.3) -> float:
    """Best per-call time (µs) over repeated batches lasting about ``seconds``."""
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        best = min(best, (time.perf_counter() - t0) / 10)
    return best * 1e6


def measure() -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, array in TENSORS.items():
        for framed in (True, False):

            def enc(array: np.ndarray = array, framed: bool = framed) -> bytes:
                tensors, binary = pack_tensors({"x": array}, framed=framed)
                return encode(JobRequest(job_id="bench", model="m", inputs=tensors), binary)

            payload = enc()

            def dec(payload: bytes = payload) -> object:
                d = decode(payload, JobRequest)
                return unpack_tensors(d.message.inputs, d.binary)

            key = f"{name}_{'framed' if framed else 'json_b64'}"
            out[key] = {"encode_us": round(best_us(enc), 1), "decode_us": round(best_us(dec), 1),
                        "bytes": len(payload)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tensor_encoding")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure()
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:40s} encode {v['encode_us']:9.1f} us  decode {v['decode_us']:9.1f} us  {v['bytes']:>9} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
