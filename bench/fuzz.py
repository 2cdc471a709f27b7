"""Fuzzing campaign (issue 10 item 7): hostile messages on every topic flightd subscribes to, through a
real Mosquitto, while legitimate jobs run. ``python -m bench.fuzz --json`` prints one JSON object::

    {"messages": 10000, "crashes": 0, "legit_jobs_ok": "20/20", "rss_growth_mb": 3.1,
     "tracebacks": 0, "ping_ms_after": 4.2, "refusal_lines": 10000, "cpu": {...}}

``crashes``: 1 when flightd exited during the run; ``legit_jobs_ok``: legitimate digits jobs (queued
among the burst) that ended ``done`` with the outputs ONNX Runtime gives here for the same input;
``rss_growth_mb``: flightd's VmRSS after the burst minus before it; ``tracebacks``: lines starting a
stack trace in flightd's log; ``ping_ms_after``: a ping command's round trip right after the burst;
``refusal_lines``: WARNING-or-worse lines in flightd's log (one per refused message is the rule).

The generator (:func:`hostile_message`) draws from a :class:`random.Random`, so the hypothesis test
(tests/test_fuzz_e2e.py) drives the same kinds with ``st.randoms()`` and shrinks what fails. The
kinds: random bytes; ORB1 frames truncated or claiming a huge header; JSON of the wrong type; deeply
nested JSON; a valid message with one field made wrong (wrong type, huge or non-finite number, odd
unicode id, overflowing tensor shape); empty and retained-empty payloads; odd unicode topic levels
(upload ids, telemetry channels). :class:`Probe` is a plain paho client watching the satellite's
topics, with what a reply is due to each hostile message (:attr:`Hostile.reply_topic`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import math
import random
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho

from link.codec import MAGIC, encode, pack_tensors
from link.envelope import MAGIC as ENVELOPE_MAGIC
from link.messages import Command, JobRequest, Ping, Telemetry, is_identifier
from link.sequence import ListSequences, SequenceCommand
from link.topics import TopicMap
from link.uplink import UploadQuery

DIGITS = "digits-int8"
BATCH = 100
"""Hostile messages between two pings while the bench sends: the ground's link is paced, and a
backlog at the broker would measure queueing, not flightd."""
WARMUP = 200
"""Hostile messages sent before the RSS baseline: the first use of every refusal path (lazy imports,
pydantic's and re's caches) is not growth."""
REPO = Path(__file__).resolve().parent.parent

ODD_IDS = (
    "", "a" * 65, "job\n", "\njob", "jöb", "j ob", "job.1", "-job", "_job", "\u202ejob", "job\u200b",
    "\U0001d50fob", "\U0001f680", "ｊｏｂ", "job\t", "\ud7ff", "\x7f", "CON", "..", "a\\b", "j%2Fb",
)
"""Identifiers that break :data:`link.messages.TOPIC_ID_PATTERN` (and a few that are fine to a
filesystem but not here), used in payload fields and, where a topic can carry them, in topic levels."""

TOPIC_ODD_LEVELS = tuple(i for i in ODD_IDS if i and not set("/+#") & set(i)
                         and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in i))
"""Those of :data:`ODD_IDS` an MQTT topic level can carry: no wildcards or separators, and no control
characters (Mosquitto disconnects a client that publishes one in a topic)."""

BAD_NUMBERS = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 30, "-" + "9" * 25,
               "1" + "0" * 5000, "1e-400", "123456789012345678901234567890.5")
"""JSON number literals (as text) that no field accepts: non-finite, overflowing, too many digits."""


@dataclass(frozen=True)
class Hostile:
    """One hostile message: where it goes, its bytes, whether it is retained, and the topic on which
    a reply is due (None where the message names no id a reply can carry: the refusal is logged)."""

    kind: str
    topic: str
    payload: bytes
    retain: bool = False
    reply_topic: str | None = None
    refused: bool = True
    """Where no reply is due: whether flightd must refuse it (a well-formed sample is taken)."""


def _mutate(doc: Any, rng: random.Random, depth: int = 0) -> tuple[Any, str]:
    """``doc`` with one leaf made wrong, and a JSON text fragment to splice (non-finite numbers and
    overlong integers cannot go through json.dumps as themselves)."""
    if isinstance(doc, dict) and doc and depth < 6:
        key = rng.choice(sorted(doc))
        if key != "schema_version" or rng.random() < 0.1:
            child, text = _mutate(doc[key], rng, depth + 1)
            return {**doc, key: child}, text
    if isinstance(doc, list) and doc and depth < 6:
        i = rng.randrange(len(doc))
        child, text = _mutate(doc[i], rng, depth + 1)
        return [*doc[:i], child, *doc[i + 1 :]], text
    choice = rng.randrange(6)
    if choice == 0:
        return "@@BAD@@", rng.choice(BAD_NUMBERS)
    if choice == 1:
        return "@@BAD@@", json.dumps(rng.choice(ODD_IDS) + ("" if isinstance(doc, str) else "x"))
    if choice == 2:
        return "@@BAD@@", "[" * 40 + "]" * 40
    if choice == 3:
        return "@@BAD@@", json.dumps({"nested": {"x": [1, 2, {"y": None}]}})
    if choice == 4:
        return "@@BAD@@", "true" if not isinstance(doc, bool) else '"yes"'
    return "@@BAD@@", json.dumps([doc, doc])


def _splice(doc: dict[str, Any], rng: random.Random) -> bytes:
    mutated, text = _mutate(doc, rng)
    return json.dumps(mutated, ensure_ascii=rng.random() < 0.5).replace('"@@BAD@@"', text, 1).encode()


def legit_inputs(seed: int) -> dict[str, np.ndarray]:
    """The digits model's input of legitimate job ``seed``: an 8x8 image in [0, 1)."""
    return {"image": np.random.default_rng(seed).random((1, 1, 8, 8), dtype=np.float32)}


def legit_job(job_id: str, seed: int) -> bytes:
    tensors, binary = pack_tensors(legit_inputs(seed))
    return encode(JobRequest(job_id=job_id, model=DIGITS, inputs=tensors), binary)


class Templates:
    """Valid messages of every inbound kind, as JSON documents, for :func:`_splice` to break."""

    def __init__(self, topics: TopicMap) -> None:
        self.topics = topics
        image = legit_inputs(0)["image"]
        self.image = {"dtype": "float32", "shape": [1, 1, 8, 8],
                      "data_b64": base64.b64encode(image.tobytes()).decode()}

    def job(self, job_id: str) -> dict[str, Any]:
        return {"schema_version": 1, "job_id": job_id, "model": DIGITS, "inputs": {"image": dict(self.image)},
                "priority": 5}

    def command(self, command_id: str) -> dict[str, Any]:
        return json.loads(encode(Command(command_id=command_id, issued_utc=time.time(), body=Ping())))

    def sequence_command(self, command_id: str) -> dict[str, Any]:
        return json.loads(encode(SequenceCommand(command_id=command_id, issued_utc=time.time(),
                                                 body=ListSequences())))

    def upload(self, upload_id: str, rng: random.Random) -> dict[str, Any]:
        if rng.random() < 0.5:
            return json.loads(encode(UploadQuery(upload_id=upload_id, query_id="q1")))
        return {"schema_version": 1, "kind": "begin", "upload_id": upload_id, "chunk_bytes": 65536, "n_chunks": 1,
                "manifest": {"name": "fz", "version": "1.0.0", "sha256": "0" * 64, "size_bytes": 100,
                             "inputs": {}, "outputs": {}}}

    def telemetry(self, channel: str) -> dict[str, Any]:
        return json.loads(encode(Telemetry(sat=self.topics.sat, channel=channel, t_s=10.0,
                                           values={"soc": 0.5, "battery_v": 28.0})))


def _frame(rng: random.Random, header: bytes) -> tuple[bytes, bool]:
    """An ORB1 frame that lies (a header length past the end, a truncated frame), or a well-formed one
    with a binary section nothing points into; and whether it is well-formed."""
    how = rng.randrange(3)
    if how == 0:
        return MAGIC + struct.pack("<I", rng.choice([0xFFFFFFFF, 2**31, len(header) + 1, 10**9])) + header[:64], False
    if how == 1:
        cut = rng.randrange(0, 8)
        return (MAGIC + struct.pack("<I", len(header)) + header)[: 4 + cut], False
    return MAGIC + struct.pack("<I", len(header)) + header + bytes(rng.randrange(0, 64)), True


def _seal(rng: random.Random, body: bytes, sat: str) -> tuple[bytes, bytes]:
    """An ORS1 envelope (link.envelope) around ``body`` signed by a key nobody holds, or one cut
    short; and the body a reader can still find in it (empty when cut)."""
    sat_bytes = rng.choice((sat, "sat9", "x" * 200)).encode()[:255]
    header = ENVELOPE_MAGIC + rng.randbytes(8) + struct.pack("<Q", rng.choice((0, 1, 2**64 - 1)))
    whole = header + bytes([len(sat_bytes)]) + sat_bytes + body + rng.randbytes(64)
    if rng.random() < 0.5:
        return whole[: rng.randrange(4, len(whole))], b""
    return whole, body


def _overflowing_tensor(rng: random.Random) -> dict[str, Any]:
    shape = rng.choice([[2**62, 2**62], [2**31, 2**31, 2**31], [-1, 8], [10**30], [0, 2**63], [1] * 40,
                        [1, 1, 8, 8, 0], [65536, 65536]])
    return {"dtype": rng.choice(["float32", "float64", "complex128", "object", "int4", "<f4"]), "shape": shape,
            "offset": rng.choice([0, 2**63, 2**64 + 1]), "nbytes": rng.choice([0, 256, 2**62])}


def hostile_message(rng: random.Random, topics: TopicMap, n: int) -> Hostile:
    """Hostile message number ``n`` (its ids carry ``n`` so that replies can be matched)."""
    t = Templates(topics)
    target = rng.choice(("job", "command", "sequence", "upload", "telemetry", "status"))
    job_id, command_id, upload_id = f"fz-job-{n}", f"fz-cmd-{n}", f"fz-up-{n}"
    odd_level = False
    if target == "job":
        topic, doc = topics.job_submit, t.job(job_id)
        due: str | None = topics.job_state(job_id)
    elif target in ("command", "sequence"):
        topic = topics.command if target == "command" else topics.sequence_command
        doc = t.command(command_id) if target == "command" else t.sequence_command(command_id)
        due = topics.command_reply(command_id)
    elif target == "upload":
        if rng.random() < 0.3:
            upload_id, odd_level = rng.choice(TOPIC_ODD_LEVELS), True
        topic = f"{topics.base}/models/upload/{upload_id}"
        doc = t.upload(upload_id if not odd_level else "fz-up-x", rng)
        due = None if odd_level else topics.upload_progress(upload_id)
    elif target == "telemetry":
        channel = rng.choice(("power", "thermal", f"fz{n}")) if rng.random() < 0.7 else rng.choice(TOPIC_ODD_LEVELS)
        topic, doc, due = f"{topics.base}/tlm/{channel}", t.telemetry("power"), None
    else:  # flightd's own status (read for a rival): only what cannot be a rival's status, which stops it
        topic, doc, due = topics.status, {}, None
    refused, body = True, b""
    kind = rng.choice(("random_bytes", "frame", "wrong_type", "nested", "mutated", "mutated", "mutated",
                       "empty", "shape", "mismatched_id", "sealed"))
    if kind == "shape" and target != "job":
        kind = "mutated"
    if target == "status" and kind in ("mutated", "shape", "mismatched_id", "frame", "sealed"):
        kind = "random_bytes"
    reply = due
    if kind == "random_bytes":
        payload = rng.randbytes(rng.randrange(1, 2048))
        reply = None
    elif kind == "frame":
        payload, intact = _frame(rng, json.dumps(doc).encode())
        refused = not (intact and topic == topics.telemetry("power"))
    elif kind == "wrong_type":
        payload = rng.choice([b"[]", b"42", b'"job"', b"null", b"true", b"[{}]", b"1e999", b"NaN", b"{", b"}"])
        reply = None
    elif kind == "nested":
        depth = rng.choice([50, 500, 5000, 100_000])
        payload = ("[" * depth + "]" * depth).encode() if rng.random() < 0.5 else (
            '{"a":' * depth + "1" + "}" * depth).encode()
        reply = None
    elif kind == "empty":
        payload = rng.choice([b"", b"", b" ", b"\xef\xbb\xbf", b"\n\t "])
        reply = None
        return Hostile(f"{target}:{kind}", topic, payload, retain=payload == b"" and rng.random() < 0.5)
    elif kind == "shape":
        doc["inputs"] = {"image": _overflowing_tensor(rng)}
        payload = json.dumps(doc).encode()
    elif kind == "mismatched_id":
        for key in ("job_id", "command_id", "upload_id", "sat"):
            if key in doc:
                doc[key] = rng.choice((*ODD_IDS, f"other-{n}", "sat9"))
        if target == "telemetry" and rng.random() < 0.5:  # a readable sample about another channel
            doc["channel"] = rng.choice(("thermal", "orbit", f"other{n}"))
        payload = json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    elif kind == "sealed":
        payload, body = _seal(rng, json.dumps(doc).encode() if rng.random() < 0.5 else _splice(doc, rng), topics.sat)
        refused = True
    else:
        payload = _splice(doc, rng)
    if reply is not None and target in ("job", "command", "sequence"):
        inner = body if kind == "sealed" else payload
        readable = _readable_field(inner, "job_id" if target == "job" else "command_id")
        reply = None if readable is None else (
            topics.job_state(readable) if target == "job" else topics.command_reply(readable))
    return Hostile(f"{target}:{kind}", topic, payload, reply_topic=reply, refused=refused)


def _readable_field(payload: bytes, key: str) -> str | None:
    """The id in ``key`` of a JSON payload (or a whole ORB1 frame's header) where a reply can carry
    it, else None."""
    if payload.startswith(MAGIC):
        (n,) = struct.unpack_from("<I", payload.ljust(8, b"\0"), 4)
        payload = payload[8 : 8 + n] if len(payload) >= 8 + n else b""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, str) and is_identifier(value) else None


class Probe:
    """A paho client watching what flightd publishes (job states, results, command replies, upload
    progress, events, status): every message seen, by topic (thread-safe)."""

    def __init__(self, host: str, port: int, topics: TopicMap, client_id: str = "fuzz-probe") -> None:
        self.topics = topics
        self.seen: dict[str, list[bytes]] = defaultdict(list)
        self._unacked: list[paho.MQTTMessageInfo] = []
        self._cond = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10.0):
            raise RuntimeError(f"no subscription on the broker at {host}:{port}")

    def _on_connect(self, *_: Any) -> None:
        t = self.topics  # what flightd publishes, not the ground's own messages coming back
        self.client.subscribe([(f, 1) for f in (t.job_state_all, t.result_all, t.command_reply_all,
                                                t.upload_progress_all, t.events, t.status)])

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        with self._cond:
            self.seen[message.topic].append(bytes(message.payload))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        if qos:
            self._unacked.append(info)

    def flush(self, timeout_s: float) -> bool:
        """Wait until the broker acknowledged every QoS 1 publish so far (the burst is out of the ground's
        hands: what is left is queued for flightd); False when some were not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self._unacked:
            if not self._unacked[0].is_published():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.001)
                continue
            self._unacked.pop(0)
        return True

    def wait_for(self, predicate: Callable[[dict[str, list[bytes]]], bool], timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.seen), timeout_s)

    def wait_topic(self, topic: str, timeout_s: float) -> list[bytes]:
        self.wait_for(lambda seen: bool(seen.get(topic)), timeout_s)
        with self._cond:
            return list(self.seen.get(topic, []))

    def ping(self, command_id: str, timeout_s: float = 10.0) -> float | None:
        """Round trip of a ping command (s), None when no reply came within ``timeout_s``."""
        started = time.perf_counter()
        self.publish(self.topics.command, encode(Command(command_id=command_id, issued_utc=time.time(), body=Ping())))
        replies = self.wait_topic(self.topics.command_reply(command_id), timeout_s)
        return time.perf_counter() - started if replies else None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def expected_outputs(seed: int) -> dict[str, np.ndarray]:
    """What ONNX Runtime here gives for legitimate job ``seed`` on the bundled digits model."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(REPO / "models" / DIGITS / "1.0.0" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, legit_inputs(seed)), strict=True))


def result_matches(payload: bytes, seed: int, expected: dict[str, np.ndarray] | None = None) -> bool:
    """Whether a ``results/<job_id>`` payload holds the outputs ONNX Runtime gives for ``seed``."""
    from link.codec import decode, unpack_tensors
    from link.messages import JobResult

    decoded = decode(payload, JobResult)
    got = unpack_tensors(decoded.message.outputs, decoded.binary)
    want = expected if expected is not None else expected_outputs(seed)
    return set(got) == set(want) and all(np.allclose(got[k], want[k], atol=1e-5) for k in want)


def refusal_lines(log_text: str) -> int:
    """WARNING-or-worse lines in a flightd log (its format puts the level name in each line)."""
    return sum(1 for line in log_text.splitlines() if " WARNING " in line or " ERROR " in line
               or " CRITICAL " in line)


def tracebacks(log_text: str) -> int:
    return log_text.count("Traceback (most recent call last)")


@dataclass
class Campaign:
    messages: int
    legit_jobs: int
    seed: int
    keep_log: Path | None = None
    batch: int = BATCH
    kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))


async def run(campaign: Campaign) -> dict[str, Any]:
    from bench.harness import cpu_info, progress, rig

    async with rig(DIGITS, threads=1, concurrency=1) as r:
        topics = TopicMap("bench")
        probe = Probe(r.broker.host, r.broker.port, topics)
        try:
            rng = random.Random(campaign.seed)
            sync = itertools.count()

            def send(count: int, first: int) -> float:
                """``count`` hostile messages in batches of BATCH, each batch synced by a ping (the link
                paces the ground); the worst ping round trip (s)."""
                worst = 0.0
                for n in range(first, first + count):
                    if n in legit_at:
                        probe.publish(topics.job_submit, legit_job(*legit_at[n]))
                    h = hostile_message(rng, topics, n)
                    campaign.kinds[h.kind.split(":")[1]] += 1
                    probe.publish(h.topic, h.payload, retain=h.retain)
                    if campaign.batch and (n - first + 1) % campaign.batch == 0 and n != first + count - 1:
                        rtt = probe.ping(f"fuzz-sync-{next(sync)}", timeout_s=60.0)
                        if rtt is None:
                            raise RuntimeError(f"flightd did not answer a ping after {n} hostile messages")
                        worst = max(worst, rtt)
                        if (n + 1) % 1000 == 0:
                            progress(f"fuzz: {n + 1 - first} messages sent")
                return worst

            legit = {f"legit-{i}": i for i in range(campaign.legit_jobs)}
            every = max(1, campaign.messages // max(1, campaign.legit_jobs))
            legit_at = {WARMUP + i * every: (job_id, seed) for i, (job_id, seed) in enumerate(legit.items())}
            rss_cold = r.rss_mb()["VmRSS"]
            send(WARMUP, 0)  # first use of every refusal path (imports, caches): not growth
            probe.ping("fuzz-warm", timeout_s=60.0)
            rss_before = r.rss_mb()["VmRSS"]
            started = time.perf_counter()
            worst_sync_s = send(campaign.messages, WARMUP)
            if not probe.flush(60.0):
                raise RuntimeError("the broker did not acknowledge the burst within 60 s")
            sent_s = time.perf_counter() - started
            ping_s = probe.ping("fuzz-ping-after", timeout_s=60.0)
            burst_s = time.perf_counter() - started
            expected = expected_outputs(0)  # one model: the outputs differ by seed, computed below
            results = {job_id: probe.wait_topic(topics.result(job_id), 120.0) for job_id in legit}
            ok = sum(1 for job_id, seed in legit.items() if results[job_id]
                     and result_matches(results[job_id][-1], seed, expected if seed == 0 else None))
            rss_after = r.rss_mb()["VmRSS"]
            rss_peak = r.rss_mb()["VmHWM"]
            crashes = 0 if r.flightd.poll() is None else 1
        finally:
            probe.close()
        log_text = (r.workdir / "flightd.log").read_text(errors="replace")
        if campaign.keep_log is not None:
            campaign.keep_log.write_text(log_text)
    return {
        "messages": campaign.messages,
        "crashes": crashes,
        "legit_jobs_ok": f"{ok}/{campaign.legit_jobs}",
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "rss_growth_cold_mb": round(rss_after - rss_cold, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "batch": campaign.batch,
        "warmup_messages": WARMUP,
        "tracebacks": tracebacks(log_text),
        "ping_ms_after": None if ping_s is None else round(ping_s * 1e3, 1),
        "refusal_lines": refusal_lines(log_text),
        "burst_s": round(burst_s, 1),
        "sent_s": round(sent_s, 2),
        "worst_sync_ping_ms": round(worst_sync_s * 1e3, 1),
        "kinds": dict(campaign.kinds),
        "seed": campaign.seed,
        "cpu": cpu_info(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--legit-jobs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-log", type=Path, help="copy flightd's log here")
    parser.add_argument("--batch", type=int, default=BATCH,
                        help="hostile messages between two pings (0: one unpaced burst, a flood)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    out = asyncio.run(run(Campaign(args.messages, args.legit_jobs, args.seed, args.keep_log, args.batch)))
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    if not math.isfinite(out["rss_growth_mb"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
