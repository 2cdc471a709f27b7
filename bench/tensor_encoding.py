"""Encode + decode cost and size of a job request in each link encoding (framed vs JSON + base64).

``python -m bench.tensor_encoding --json`` prints one JSON object: per encoding and tensor, the
microseconds to encode a JobRequest to bytes and to decode it back to a numpy array, and the size;
``*_framed_misaligned``: decoding a frame as an older writer made it (no padding) whose tensor
bytes are not aligned to their element size, so the decoder copies them (:func:`link.tensor.aligned_copy`);
``cpu``: the processor it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import struct
import sys
import time
from collections.abc import Callable

import numpy as np

from link.codec import MAGIC, decode, encode, pack_tensors, unpack_tensors
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


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def misaligned(payload: bytes) -> bytes:
    """``payload`` (a padded frame) as an unpadded one whose binary section starts at an odd offset."""
    (n,) = struct.unpack_from("<I", payload, len(MAGIC))
    header = payload[8 : 8 + n].rstrip(b" ")
    if (8 + len(header)) % 2 == 0:
        header += b" "
    return MAGIC + struct.pack("<I", len(header)) + header + payload[8 + n :]


def decode_arrays(payload: bytes) -> object:
    d = decode(payload, JobRequest)
    return unpack_tensors(d.message.inputs, d.binary)


def settle_malloc() -> None:
    """Free one large block first: glibc then serves the megabyte buffers below from its heap, as a
    long-running process does, instead of mapping fresh (page-faulting) memory for each one, which
    costs 0.6-0.9 ms per 786 kB encode here and depends on what ran before (glibc's dynamic mmap
    threshold rises to the size of the largest mapped block freed, up to 32 MiB)."""
    block = bytearray(16 * 1024 * 1024)  # under glibc's 32 MiB ceiling for the threshold
    del block


def measure() -> dict[str, dict[str, float]]:
    settle_malloc()
    out: dict[str, dict[str, float]] = {}
    unaligned: dict[str, bytes] = {}
    for name, array in TENSORS.items():
        for framed in (True, False):

            def enc(array: np.ndarray = array, framed: bool = framed) -> bytes:
                tensors, binary = pack_tensors({"x": array}, framed=framed)
                return encode(JobRequest(job_id="bench", model="m", inputs=tensors), binary)

            payload = enc()

            def dec(payload: bytes = payload) -> object:
                return decode_arrays(payload)

            key = f"{name}_{'framed' if framed else 'json_b64'}"
            out[key] = {"encode_us": round(best_us(enc), 1), "decode_us": round(best_us(dec), 1),
                        "bytes": len(payload)}
            if framed and array.dtype.itemsize > 1:
                unaligned[f"{key}_misaligned"] = misaligned(payload)
    for key, old in unaligned.items():
        out[key] = {"decode_us": round(best_us(lambda old=old: decode_arrays(old)), 1), "bytes": len(old)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tensor_encoding")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure()
    if args.json:
        print(json.dumps({**result, "cpu": cpu_model()}))
    else:
        print(f"cpu: {cpu_model()}")
        for k, v in result.items():
            encode_us = f"{v['encode_us']:9.1f} us" if "encode_us" in v else " " * 12
            print(f"{k:40s} encode {encode_us}  decode {v['decode_us']:9.1f} us  {v['bytes']:>9} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
