"""The onboard uplink receiver without a broker: chunk bookkeeping, resume from disk, verification, install.

Real files, real ONNX Runtime; the payloads are the exact bytes the ground sends.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from flight.command_guard import CommandGuard
from flight.registry import ModelError, ModelRegistry
from flight.uplink import BEGIN_FILE, DATA_FILE, SIDECAR_FILE, UplinkReceiver
from ground.model.files import build_manifest, write_manifest
from link.auth import sign
from link.codec import decode, encode
from link.manifest import MODEL_FILE, ModelManifest
from link.messages import Event, EventKind
from link.topics import TopicMap
from link.uplink import (
    UploadBegin,
    UploadChunk,
    UploadProgress,
    UploadQuery,
    UploadState,
    chunk_count,
    chunk_span,
    from_ranges,
    to_ranges,
)

TOPICS = TopicMap("sat1")


def build_matmul_model(path: Path, k: int, n: int, seed: int = 0) -> np.ndarray:
    """``y[1, n] = x[1, k] @ W`` with a float32 initializer W of k*n values (4*k*n bytes); returns W."""
    w = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return w


def chunks_of(data: bytes, chunk_bytes: int) -> list[bytes]:
    return [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]


def begin_payload(upload_id: str, manifest: ModelManifest, chunk_bytes: int) -> bytes:
    n = chunk_count(manifest.size_bytes, chunk_bytes)
    return encode(UploadBegin(upload_id=upload_id, manifest=manifest, chunk_bytes=chunk_bytes, n_chunks=n))


def chunk_payload(upload_id: str, index: int, data: bytes, digest: str | None = None) -> bytes:
    header = UploadChunk(upload_id=upload_id, index=index, sha256=digest or hashlib.sha256(data).hexdigest())
    return encode(header, data)


def progresses(out: list[tuple[str, bytes]], upload_id: str) -> list[UploadProgress]:
    return [decode(p, UploadProgress).message for t, p in out if t == TOPICS.upload_progress(upload_id)]


def events(out: list[tuple[str, bytes]]) -> list[Event]:
    return [decode(p, Event).message for t, p in out if t == TOPICS.events]


@pytest.fixture
def model_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    path = tmp_path / "src" / "model.onnx"
    w = build_matmul_model(path, 64, 80)  # 20 kB of weights
    return path, w


def make_receiver(tmp_path: Path, max_model_bytes: int | None = None, **kwargs: object) -> UplinkReceiver:
    registry = ModelRegistry(tmp_path / "models")
    if max_model_bytes is not None:
        registry.max_model_bytes = max_model_bytes
    (tmp_path / "models").mkdir(exist_ok=True)
    registry.scan()
    return UplinkReceiver(registry, tmp_path / "staging", TOPICS, lambda: 1000.0, **kwargs)  # type: ignore[arg-type]


def send(rx: UplinkReceiver, upload_id: str, payload: bytes) -> list[tuple[str, bytes]]:
    return rx.on_message(TOPICS.upload(upload_id), payload)


# ------------------------------------------------------------------------------- chunk bookkeeping


@given(st.sets(st.integers(0, 400)))
def test_ranges_round_trip_and_are_minimal(indices: set[int]) -> None:
    ranges = to_ranges(indices)
    assert from_ranges(ranges) == sorted(indices)
    for (a0, a1), (b0, b1) in itertools.pairwise(ranges):
        assert a0 < a1 < b0 < b1  # sorted, non-empty, and never adjacent (else they would be merged)
    # The number of ranges is the number of maximal runs: count starts of runs independently.
    assert len(ranges) == sum(1 for i in indices if i - 1 not in indices)


@given(st.integers(1, 10**9), st.integers(1024, 4 * 1024 * 1024))
def test_chunks_tile_the_file_exactly(size: int, chunk_bytes: int) -> None:
    n = chunk_count(size, chunk_bytes)
    assert (n - 1) * chunk_bytes < size <= n * chunk_bytes
    assert chunk_span(0, size, chunk_bytes)[0] == 0
    assert chunk_span(n - 1, size, chunk_bytes)[1] == size
    if n > 1:
        assert chunk_span(1, size, chunk_bytes)[0] == chunk_span(0, size, chunk_bytes)[1]


def test_begin_with_wrong_chunk_count_is_invalid(model_file: tuple[Path, np.ndarray]) -> None:
    manifest = build_manifest(model_file[0], name="mm", version="1")
    with pytest.raises(ValueError, match="n_chunks 3 does not cover"):
        UploadBegin(upload_id="u", manifest=manifest, chunk_bytes=1024, n_chunks=3)


# --------------------------------------------------------------------------------- full uploads


def test_shuffled_duplicated_chunks_install_a_runnable_model(
    tmp_path: Path, model_file: tuple[Path, np.ndarray]
) -> None:
    path, w = model_file
    data = path.read_bytes()
    manifest = build_manifest(path, name="mm", version="1.0.0")
    rx = make_receiver(tmp_path)
    out = send(rx, "up1", begin_payload("up1", manifest, 1024))
    first = progresses(out, "up1")[-1]
    n = chunk_count(len(data), 1024)
    assert first.state is UploadState.RECEIVING and first.missing == [(0, n)] and first.received == 0
    order = [*list(range(n)), 3, 7, 3]
    random.Random(1).shuffle(order)
    order.remove(0)
    order.append(0)  # the last new chunk completes the file
    outs: list[tuple[str, bytes]] = []
    for i in order:
        outs += send(rx, "up1", chunk_payload("up1", i, chunks_of(data, 1024)[i]))
    final = progresses(outs, "up1")[-1]
    assert final.state is UploadState.INSTALLED, final.reason
    assert [p.state for p in progresses(outs, "up1")][-2:] == [UploadState.VERIFYING, UploadState.INSTALLED]
    installed = tmp_path / "models" / "mm" / "1.0.0"
    assert (installed / MODEL_FILE).read_bytes() == data
    assert json.loads((installed / "manifest.json").read_text())["sha256"] == hashlib.sha256(data).hexdigest()
    assert [m["version"] for m in rx.registry.listing() if m["name"] == "mm"] == ["1.0.0"]
    assert not list((tmp_path / "models").glob(".uplink-*"))
    assert not (tmp_path / "staging" / "up1" / DATA_FILE).exists()
    x = np.random.default_rng(5).standard_normal((1, 64)).astype(np.float32)
    session = rx.registry.session(rx.registry.resolve("mm"), 1)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ w, rtol=1e-5, atol=1e-5)
    assert any(e.kind is EventKind.MODEL and "installed" in e.message for e in events(outs))
    # Idempotent afterwards: the same begin or a query says installed, nothing is re-received.
    again = progresses(send(rx, "up1", begin_payload("up1", manifest, 1024)), "up1")
    assert again[-1].state is UploadState.INSTALLED


def test_restart_resumes_from_staging_on_disk(tmp_path: Path, model_file: tuple[Path, np.ndarray]) -> None:
    path, _ = model_file
    data = path.read_bytes()
    parts = chunks_of(data, 1024)
    manifest = build_manifest(path, name="mm", version="2")
    rx = make_receiver(tmp_path)
    send(rx, "up2", begin_payload("up2", manifest, 1024))
    kept = set(range(0, len(parts), 3)) | {len(parts) - 1}
    for i in sorted(kept):
        send(rx, "up2", chunk_payload("up2", i, parts[i]))
    del rx  # flightd stops; nothing but the disk survives
    rx2 = make_receiver(tmp_path)
    reply = progresses(send(rx2, "up2", encode(UploadQuery(upload_id="up2", query_id="q1"))), "up2")[-1]
    assert reply.query_id == "q1" and reply.state is UploadState.RECEIVING
    assert reply.received == len(kept)
    assert from_ranges(reply.missing) == sorted(set(range(len(parts))) - kept)
    # Resuming with the same begin does not reset anything.
    assert progresses(send(rx2, "up2", begin_payload("up2", manifest, 1024)), "up2")[-1].received == len(kept)
    out: list[tuple[str, bytes]] = []
    for i in from_ranges(reply.missing):
        out += send(rx2, "up2", chunk_payload("up2", i, parts[i]))
    assert progresses(out, "up2")[-1].state is UploadState.INSTALLED
    assert (tmp_path / "models" / "mm" / "2" / MODEL_FILE).read_bytes() == data


def test_bad_chunk_is_refused_and_asked_again(tmp_path: Path, model_file: tuple[Path, np.ndarray]) -> None:
    path, _ = model_file
    parts = chunks_of(path.read_bytes(), 1024)
    rx = make_receiver(tmp_path)
    send(rx, "up3", begin_payload("up3", build_manifest(path, name="mm", version="1"), 1024))
    wrong = bytearray(parts[2])
    wrong[10] ^= 0x01
    out = send(rx, "up3", chunk_payload("up3", 2, bytes(wrong), hashlib.sha256(parts[2]).hexdigest()))
    reply = progresses(out, "up3")[-1]
    assert "chunk 2 refused" in (reply.reason or "") and 2 in from_ranges(reply.missing)
    short = send(rx, "up3", chunk_payload("up3", 1, parts[1][:-1]))
    assert "expected 1024" in (progresses(short, "up3")[-1].reason or "")
    out = []
    for i, part in enumerate(parts):
        out += send(rx, "up3", chunk_payload("up3", i, part))
    assert progresses(out, "up3")[-1].state is UploadState.INSTALLED


def test_flipped_byte_is_rejected_with_a_clear_event_and_never_installed(
    tmp_path: Path, model_file: tuple[Path, np.ndarray]
) -> None:
    path, _ = model_file
    data = bytearray(path.read_bytes())
    manifest = build_manifest(path, name="mm", version="1")
    data[len(data) // 2] ^= 0x40
    rx = make_receiver(tmp_path)
    send(rx, "up4", begin_payload("up4", manifest, 1024))
    out: list[tuple[str, bytes]] = []
    for i, part in enumerate(chunks_of(bytes(data), 1024)):
        out += send(rx, "up4", chunk_payload("up4", i, part))  # each chunk consistent with its own hash
    final = progresses(out, "up4")[-1]
    assert final.state is UploadState.REJECTED
    assert final.reason is not None and final.reason.startswith("sha256 mismatch")
    assert hashlib.sha256(bytes(data)).hexdigest() in final.reason and manifest.sha256 in final.reason
    errors = [e for e in events(out) if e.severity == "error"]
    assert len(errors) == 1 and errors[0].kind is EventKind.MODEL and "sha256 mismatch" in errors[0].message
    assert errors[0].details["name"] == "mm"
    assert not (tmp_path / "models" / "mm").exists() and rx.registry.listing() == []
    with pytest.raises(ModelError, match="unknown model 'mm'"):
        rx.registry.resolve("mm")
    assert not (tmp_path / "staging" / "up4" / DATA_FILE).exists()
    # The verdict survives a restart, and a query gets it.
    rx2 = make_receiver(tmp_path)
    assert progresses(send(rx2, "up4", encode(UploadQuery(upload_id="up4"))), "up4")[-1].state is UploadState.REJECTED


def test_chunk_changed_on_disk_is_asked_again_not_rejected(tmp_path: Path, model_file: tuple[Path, np.ndarray]) -> None:
    path, _ = model_file
    parts = chunks_of(path.read_bytes(), 1024)
    rx = make_receiver(tmp_path)
    send(rx, "up5", begin_payload("up5", build_manifest(path, name="mm", version="1"), 1024))
    for i in range(len(parts) - 1):
        send(rx, "up5", chunk_payload("up5", i, parts[i]))
    staged = tmp_path / "staging" / "up5" / DATA_FILE
    with staged.open("r+b") as f:  # a lost write: chunk 4's bytes are not what the sidecar recorded
        f.seek(4 * 1024)
        f.write(bytes(1024))
    out = send(rx, "up5", chunk_payload("up5", len(parts) - 1, parts[-1]))
    reply = progresses(out, "up5")[-1]
    assert reply.state is UploadState.RECEIVING and from_ranges(reply.missing) == [4], reply.reason
    out = send(rx, "up5", chunk_payload("up5", 4, parts[4]))
    assert progresses(out, "up5")[-1].state is UploadState.INSTALLED


# ------------------------------------------------------------------------------------ refusals


def test_refusals_have_clear_reasons(tmp_path: Path, model_file: tuple[Path, np.ndarray]) -> None:
    path, _ = model_file
    rx = make_receiver(tmp_path, max_model_bytes=10_000)
    big = progresses(send(rx, "big", begin_payload("big", build_manifest(path, name="mm", version="1"), 1024)), "big")
    assert big[-1].state is UploadState.REJECTED and "exceeds the 10000-byte limit" in (big[-1].reason or "")

    existing = tmp_path / "models" / "mm" / "1"
    build_matmul_model(existing / MODEL_FILE, 4, 4)
    write_manifest(build_manifest(existing / MODEL_FILE, name="mm", version="1"), existing)
    rx = make_receiver(tmp_path)
    dup = progresses(send(rx, "dup", begin_payload("dup", build_manifest(path, name="mm", version="1"), 1024)), "dup")
    assert "mm/1 already exists onboard" in (dup[-1].reason or "")

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an ONNX graph" * 100)
    manifest = build_manifest(path, name="junk", version="1").model_copy(
        update={"sha256": hashlib.sha256(junk.read_bytes()).hexdigest(), "size_bytes": junk.stat().st_size}
    )
    send(rx, "junk", begin_payload("junk", manifest, 1024))
    out: list[tuple[str, bytes]] = []
    for i, part in enumerate(chunks_of(junk.read_bytes(), 1024)):
        out += send(rx, "junk", chunk_payload("junk", i, part))
    final = progresses(out, "junk")[-1]
    assert final.state is UploadState.REJECTED and "not an ONNX model, or cut short" in (final.reason or "")
    assert not (tmp_path / "models" / "junk").exists()

    garbage = send(rx, "x1", b'{"schema_version": 1, "kind": "chunk", "upload_id": "x1"}')
    assert "refused message" in (progresses(garbage, "x1")[-1].reason or "")
    unknown = progresses(send(rx, "nope", encode(UploadQuery(upload_id="nope"))), "nope")[-1]
    assert unknown.state is UploadState.UNKNOWN
    mismatch = send(rx, "a1", encode(UploadQuery(upload_id="b2")))
    assert "came on" in (progresses(mismatch, "a1")[-1].reason or "")


def test_new_version_is_installed_but_not_activated(tmp_path: Path) -> None:
    v1 = tmp_path / "models" / "mm" / "1.0.0"
    build_matmul_model(v1 / MODEL_FILE, 8, 8, seed=1)
    write_manifest(build_manifest(v1 / MODEL_FILE, name="mm", version="1.0.0"), v1)
    src = tmp_path / "src" / "model.onnx"
    build_matmul_model(src, 8, 8, seed=2)
    rx = make_receiver(tmp_path)
    manifest = build_manifest(src, name="mm", version="2.0.0")
    send(rx, "v2", begin_payload("v2", manifest, 1024))
    out: list[tuple[str, bytes]] = []
    for i, part in enumerate(chunks_of(src.read_bytes(), 1024)):
        out += send(rx, "v2", chunk_payload("v2", i, part))
    assert progresses(out, "v2")[-1].state is UploadState.INSTALLED
    assert rx.registry.active_version("mm") == "1.0.0"  # 2.0.0 sorts higher, yet is not active by itself
    assert rx.registry.activate("mm", "2.0.0") == "1.0.0"
    assert rx.registry.rollback("mm") == "1.0.0"


def test_signed_uploads_when_the_satellite_holds_keys(tmp_path: Path, model_file: tuple[Path, np.ndarray]) -> None:
    path, _ = model_file
    key = bytes(range(32))
    rx = make_receiver(tmp_path, guard=CommandGuard({"ground": key}, 600.0, lambda: 1000.0))
    manifest = build_manifest(path, name="mm", version="1")
    n = chunk_count(manifest.size_bytes, 1024)
    begin = UploadBegin(upload_id="s1", manifest=manifest, chunk_bytes=1024, n_chunks=n, issued_utc=1000.0)
    unsigned = progresses(send(rx, "s1", encode(begin)), "s1")[-1]
    assert "model upload is not signed" in (unsigned.reason or "") and "s1" not in rx.uploads
    forged = sign(begin, "ground", bytes(32))
    assert "bad model upload signature" in (progresses(send(rx, "s1", encode(forged)), "s1")[-1].reason or "")
    stale = sign(begin.model_copy(update={"issued_utc": 1.0}), "ground", key)
    assert "outside the 600 s window" in (progresses(send(rx, "s1", encode(stale)), "s1")[-1].reason or "")
    ok = progresses(send(rx, "s1", encode(sign(begin, "ground", key))), "s1")[-1]
    assert ok.state is UploadState.RECEIVING and ok.missing == [(0, n)]


def test_half_made_staging_is_discarded(tmp_path: Path) -> None:
    junk = tmp_path / "staging" / "half"
    junk.mkdir(parents=True)
    (junk / SIDECAR_FILE).write_bytes(bytes(64))  # a crash before begin.json was written
    rx = make_receiver(tmp_path)
    assert not junk.exists() and rx.uploads == {}
    assert not (junk / BEGIN_FILE).exists()


def test_onnxruntime_loads_the_helper_model(tmp_path: Path) -> None:
    """The test model itself is sound: ORT computes x @ W (independent of flightd)."""
    w = build_matmul_model(tmp_path / "m.onnx", 16, 4)
    x = np.ones((1, 16), dtype=np.float32)
    y = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ w, rtol=1e-5)


def test_sign_matches_the_documented_recipe_for_commands_and_uploads(model_file: tuple[Path, np.ndarray]) -> None:
    """link.auth's tag, computed independently as its docstring tells any client to."""
    import hmac

    from link.messages import Command, Ping

    key = bytes(range(32))
    manifest = build_manifest(model_file[0], name="mm", version="1")
    messages: list[Command | UploadBegin] = [
        Command(command_id="c1", issued_utc=5.0, body=Ping()),
        UploadBegin(upload_id="u1", manifest=manifest, chunk_bytes=1024,
                    n_chunks=chunk_count(manifest.size_bytes, 1024), issued_utc=5.0),
    ]
    for message in messages:
        doc = json.loads(message.model_dump_json(exclude_none=True))
        body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        signed = sign(message, "ground", key)
        assert signed.auth is not None
        assert signed.auth.mac == hmac.new(key, body, hashlib.sha256).hexdigest()
    with pytest.raises(TypeError, match="has no auth field"):
        sign(UploadQuery(upload_id="u1"), "ground", key)
