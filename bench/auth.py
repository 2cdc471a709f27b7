"""What a signed request costs onboard: Ed25519 verification of realistic messages.

``python -m bench.auth --json`` prints one JSON object:

- ``verify_us``: CPU µs to check one signed job of the dispatch benchmark's size (bench.dispatch,
  digits-int8, a 1x1x8x8 float32 input, framed): parse the ORS1 envelope, find the key in the key
  ring, verify the Ed25519 signature over the exact bytes, check and advance the anti-replay window.
- ``verify_us_by_message``: the same for each message below, with ``bytes`` (the envelope's size).
- ``sign_us``: the ground's cost to seal the same job (ground.signer without the counter file).
- the CPU it ran on.

CPU time of the measuring thread (``time.thread_time``), least of several alternating rounds, so
other work on a shared machine does not inflate it (bench.radiation.alternate). The dispatch latency
with signing on and off (``p50_ms_signed``, ``p50_ms_unsigned``) joins this object once flightd checks
signatures (docs/security.md, "Integration").
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.harness import REPO, progress
from bench.radiation import alternate, cpu_description
from flight.antireplay import ReplayWindow
from flight.keyring import KeyEntry, KeyRing
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
        **cpu_description(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.auth")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring time in all")
    args = parser.parse_args(argv)
    progress("bench.auth: Ed25519 verification per signed request")
    result = measure(args.seconds)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
