"""What a signed request costs onboard: Ed25519 verification of realistic messages.

``python -m bench.auth --json`` prints one JSON object:

- ``verify_us``: CPU µs to check one signed job of the dispatch benchmark's size (bench.dispatch,
  digits-int8, a 1x1x8x8 float32 input, framed): parse the ORS1 envelope, find the key in the key
  ring, verify the Ed25519 signature over the exact bytes, check and advance the anti-replay window.
- ``verify_us_by_message``: the same for each message below, with ``bytes`` (the envelope's size).
- ``sign_us``: the ground's cost to seal the same job (ground.signer without the counter file).
- ``p50_ms_signed``, ``p50_ms_unsigned`` (and p99, ``n`` each): bench.dispatch's submit -> result
  latency through loopback Mosquitto, signed and unsigned jobs alternating one by one on the same
  flightd (which holds the bench key and accepts unsigned jobs and commands), so drift on a shared
  machine falls on both alike; ``signing_adds_ms`` is their difference at p50, and
  ``signing_adds_ms_paired_median`` the median of the per-pair differences. Signing on the ground
  (the sequence counter's file lock and fsync included) and checking onboard (verification, the
  window's journal write in the job's transaction) are both inside the timed window.
- the CPU it ran on.

``verify_us`` and ``sign_us`` are CPU time of the measuring thread (``time.thread_time``), least of
several alternating rounds, so other work on a shared machine does not inflate them
(bench.radiation_inprocess.alternate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.dispatch import MODEL, timed_job
from bench.harness import REPO, cpu_info, progress, rig
from bench.radiation_inprocess import alternate
from flight.antireplay import ReplayWindow
from flight.keyring import KeyEntry, KeyRing
from ground.client import GroundClient
from ground.signer import generate_key
from link.codec import encode, pack_tensors
from link.envelope import open_envelope, public_bytes, seal
from link.manifest import ModelManifest
from link.messages import Command, JobRequest, Ping, Role
from link.uplink import UploadBegin, chunk_count

TYPICAL = "job_digits"


def messages() -> dict[str, bytes]:
    """Unsigned encodings of the requests a satellite verifies, by name."""
    rng = np.random.default_rng(0)

    def job(shape: tuple[int, ...]) -> bytes:
        tensors, binary = pack_tensors({"image": rng.random(shape, dtype=np.float32)})
        return encode(JobRequest(job_id="bench-job-000001", model="digits-int8", inputs=tensors), binary)

    manifest_path = REPO / "models" / "digits-int8" / "1.0.0" / "manifest.json"
    manifest = ModelManifest.model_validate_json(manifest_path.read_text())
    begin = UploadBegin(upload_id="bench-upload", manifest=manifest, chunk_bytes=65536,
                        n_chunks=chunk_count(manifest.size_bytes, 65536), issued_utc=time.time())
    return {
        "command_ping": encode(Command(command_id="bench-cmd-000001", issued_utc=time.time(), body=Ping())),
        TYPICAL: job((1, 1, 8, 8)),
        "upload_begin": encode(begin),
        "job_image_3x224x224": job((1, 3, 224, 224)),
    }


def onboard_check(ring: KeyRing, window: ReplayWindow) -> Callable[[bytes], ReplayWindow]:
    """What flightd's guard does with a signed payload before it decodes the message."""

    def check(payload: bytes) -> ReplayWindow:
        envelope = open_envelope(payload)
        entry = ring.signer(envelope.fingerprint)
        envelope.verify(entry.public_key)
        return window.accept(envelope.sequence)

    return check


def measure(seconds: float) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    ring = KeyRing.of([KeyEntry("bench", Role.OPERATOR, public_bytes(key))])
    check = onboard_check(ring, ReplayWindow())
    bodies = messages()
    sealed = {name: seal(body, key, "bench", 1) for name, body in bodies.items()}
    # The window is not advanced between calls, so sequence 1 is new every time: each call does it all.
    calls: dict[str, Callable[[], Any]] = {name: (lambda p=payload: check(p)) for name, payload in sealed.items()}
    calls["sign"] = lambda: seal(bodies[TYPICAL], key, "bench", 2)
    cost = alternate(calls, seconds)
    by_message = {
        name: {"verify_us": round(cost[name] * 1e6, 1), "bytes": len(payload)} for name, payload in sealed.items()
    }
    return {
        "verify_us": by_message[TYPICAL]["verify_us"],
        "verify_us_by_message": by_message,
        "sign_us": round(cost["sign"] * 1e6, 1),
        "signature": "Ed25519 (cryptography, OpenSSL)",
        "cpu": cpu_info(),
    }


async def dispatch(n: int, warmup: int) -> dict[str, Any]:
    """Submit -> result latency of signed and unsigned jobs, alternating, on one flightd (ms)."""
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="orbitd-bench-keys-") as tmp:
        signer = generate_key(Path(tmp), "bench")
        key = {"name": "bench", "role": "operator", "public_key": signer.public_key.hex()}
        settings = {"ORBITD_SECURITY__KEYS": json.dumps([key]),
                    "ORBITD_SECURITY__ACCEPT_UNSIGNED": json.dumps(["job", "command"])}
        async with (
            rig(MODEL, threads=1, settings=settings) as r,
            GroundClient(r.broker.url, "bench") as unsigned,
            GroundClient(r.broker.url, "bench", signer=signer) as signed,
        ):
            for ground in (unsigned, signed):
                await ground.track_all_jobs()
            latencies: dict[str, list[float]] = {"signed": [], "unsigned": []}
            for i in range(warmup + n):
                pair = (("unsigned", unsigned), ("signed", signed))
                for name, ground in (pair if i % 2 else pair[::-1]):
                    elapsed_ms = await timed_job(ground, x)
                    if i >= warmup:
                        latencies[name].append(elapsed_ms)
    out: dict[str, Any] = {}
    for name, values in latencies.items():
        lat = np.array(values)
        out[f"p50_ms_{name}"] = round(float(np.percentile(lat, 50)), 3)
        out[f"p99_ms_{name}"] = round(float(np.percentile(lat, 99)), 3)
        out[f"n_{name}"] = int(lat.size)
    out["signing_adds_ms"] = round(out["p50_ms_signed"] - out["p50_ms_unsigned"], 3)
    # The jobs ran in pairs (one of each, order alternating): the median of the pairs' differences
    # is less sensitive to a shared machine's slow stretches than the difference of the medians.
    pairs = np.array(latencies["signed"]) - np.array(latencies["unsigned"])
    out["signing_adds_ms_paired_median"] = round(float(np.median(pairs)), 3)
    out["dispatch"] = f"{MODEL}, loopback Mosquitto (cleartext: signing measured alone), journal FULL"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.auth")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seconds", type=float, default=4.0, help="CPU measuring time in all")
    parser.add_argument("-n", type=int, default=300, help="jobs of each kind in the latency run")
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args(argv)
    progress("bench.auth: Ed25519 verification per signed request, then dispatch latency signed vs unsigned")
    result = measure(args.seconds)
    result.update(asyncio.run(dispatch(args.n, args.warmup)))
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
