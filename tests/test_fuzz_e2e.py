"""Issue 10 item 7: a fuzzing campaign, end to end. Hypothesis draws hostile messages (bench.fuzz's
kinds: random bytes, lying ORB1 frames, wrong types, deep nesting, huge and non-finite numbers,
overflowing shapes, odd unicode ids in payloads and topic levels, empty and retained-empty payloads)
for every topic flightd subscribes to (job submit, commands, sequence commands, uploads, telemetry),
publishes each through a real Mosquitto to a real flightd while legitimate jobs run, and checks:

- flightd stays alive and answers a ping after every message;
- a reply wherever one is due: a ``rejected`` state for a job whose id can be read, a reply on
  ``cmd/<id>/reply`` for a command, an upload progress on ``models/upload/<id>/progress``;
- exactly one log line (WARNING) per refusal, none for what was accepted, and no stack trace;
- every legitimate job ends ``done`` with the outputs ONNX Runtime gives here for its input.

flightd logs at WARNING so that each refusal is exactly the lines it adds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import (
    DIGITS,
    Hostile,
    Probe,
    expected_outputs,
    hostile_message,
    legit_job,
    refusal_lines,
    result_matches,
    tracebacks,
)
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode, encode
from link.messages import CommandReply, JobState, JobStateEvent, Telemetry
from link.topics import TopicMap
from link.uplink import UploadProgress, UploadState
from tests.support import FlightdProcess, copy_bundled, wait_online

TOPICS = TopicMap("sat1")
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
"""The start of every line flightd logs (flight.log_format): a line without it is a record broken up."""


@dataclass
class Rig:
    broker: MosquittoBroker
    flightd: FlightdProcess
    probe: Probe

    def log_lines(self) -> list[str]:
        return self.flightd.log().splitlines()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("fuzz")
    broker = MosquittoBroker(tmp / "mosquitto")
    broker.start()
    flightd = FlightdProcess(broker.url, tmp / "data", copy_bundled(tmp / "models", DIGITS), log_level="WARNING")
    flightd.start()
    probe: Probe | None = None
    try:
        asyncio.run(wait_online(broker.url))
        probe = Probe(broker.host, broker.port, TOPICS)
        yield Rig(broker, flightd, probe)
    finally:
        if probe is not None:
            probe.close()
        flightd.stop()
        broker.stop()


def refused(h: Hostile, reply: bytes) -> bool:
    """Whether ``reply`` (on ``h.reply_topic``) says the message was refused."""
    if "/jobs/" in (h.reply_topic or ""):
        return decode(reply, JobStateEvent).message.state is JobState.REJECTED
    if "/cmd/" in (h.reply_topic or ""):
        return not decode(reply, CommandReply).message.ok
    progress = decode(reply, UploadProgress).message
    return progress.state is UploadState.REJECTED or (progress.reason or "").startswith("refused")


def check_one(r: Rig, h: Hostile, sync_id: str) -> None:
    """Publish ``h``; the reply that is due, one log line if refused, none otherwise, no trace."""
    before = len(r.log_lines())
    r.probe.publish(h.topic, h.payload, retain=h.retain)
    expect_lines = 1 if h.refused else 0
    if h.reply_topic is not None:
        replies = r.probe.wait_topic(h.reply_topic, 15.0)
        assert replies, f"no reply on {h.reply_topic} to {h.kind} {h.payload[:200]!r}"
        expect_lines = 1 if refused(h, replies[0]) else 0
    assert r.probe.ping(sync_id, timeout_s=15.0) is not None, f"no ping reply after {h.kind} on {h.topic!r}"
    assert r.flightd.alive(), f"flightd died on {h.kind} {h.payload[:200]!r}"
    new = r.log_lines()[before:]
    assert tracebacks("\n".join(new)) == 0, "\n".join(new)
    assert all(RECORD.match(line) for line in new), f"a log record broken over lines:\n{chr(10).join(new)}"
    assert refusal_lines("\n".join(new)) == expect_lines, (
        f"{h.kind} on {h.topic!r} ({h.payload[:120]!r}): expected {expect_lines} log line(s), got:\n" + "\n".join(new))


def test_hostile_messages_on_every_topic_are_answered_once_while_legit_jobs_run(rig: Rig) -> None:
    counter = itertools.count()
    legit: dict[str, int] = {}

    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(rng=st.randoms(use_true_random=False))
    def fuzz(rng: random.Random) -> None:
        n = next(counter)
        if n % 16 == 0:
            job_id = f"legit-{n}"
            legit[job_id] = n
            rig.probe.publish(TOPICS.job_submit, legit_job(job_id, n))
        check_one(rig, hostile_message(rng, TOPICS, n), f"sync-{n}")

    fuzz()
    assert len(legit) >= 8
    expected = expected_outputs(0)
    for job_id, seed in legit.items():
        results = rig.probe.wait_topic(TOPICS.result(job_id), 30.0)
        assert results, f"legitimate job {job_id} has no result"
        assert result_matches(results[-1], seed, expected if seed == 0 else None), job_id
        states = [decode(p, JobStateEvent).message.state for p in rig.probe.seen[TOPICS.job_state(job_id)] if p]
        assert JobState.DONE in states, (job_id, states)
    assert rig.flightd.alive()
    assert tracebacks(rig.flightd.log()) == 0


@pytest.mark.parametrize("level", ["job\n", "\u202ejob", "a" * 65, "jöb", "\U0001f680"])
def test_upload_on_a_topic_whose_id_breaks_the_pattern_is_logged_once_without_a_trace(rig: Rig, level: str) -> None:
    """The issue's example: the refusal's own progress message cannot carry such an id (it would fail
    validation); the refusal is one log line and an event, never a stack trace. ``job\\n`` is the case
    Python's ``re.match`` let through (``$`` before a final newline): it cannot be a topic level (control
    character), so it is tried here in the payload's ``upload_id`` on a good topic."""
    topic_level = level if level.isprintable() else "fz-up-nl"
    h = Hostile("upload:odd-level", f"{TOPICS.base}/models/upload/{topic_level}",
                f'{{"schema_version": 1, "kind": "query", "upload_id": "{level.encode("unicode_escape").decode()}"}}'
                .encode(), reply_topic=None if topic_level == level else TOPICS.upload_progress(topic_level))
    check_one(rig, h, f"sync-odd-{abs(hash(level))}")
    assert rig.probe.seen[TOPICS.events], "the refusal is not on events"


def test_retained_empty_payloads_on_inbound_topics_are_refused_once(rig: Rig) -> None:
    for i, topic in enumerate([TOPICS.job_submit, TOPICS.command, TOPICS.sequence_command, TOPICS.status,
                               TOPICS.upload("fz-empty"), TOPICS.telemetry("power")]):
        check_one(rig, Hostile("empty:retained", topic, b"", retain=True), f"sync-empty-{i}")



@pytest.mark.parametrize(("topic_channel", "sat", "channel"), [("power", "sat9", "power"), ("power", "sat1", "thermal"),
                                                               ("fz-chan", "sat1", "power")])
def test_a_sample_whose_sat_or_channel_disagrees_with_its_topic_is_refused_with_a_reason(
        rig: Rig, topic_channel: str, sat: str, channel: str) -> None:
    """Issue 10 item 1 leftover: such a sample used to be taken as the topic's or the payload's channel."""
    values = {"soc": 0.5} if channel == "power" else {"board_c": 30.0}
    sample = Telemetry(sat=sat, channel=channel, t_s=10.0, values=values)
    before = len(rig.log_lines())
    check_one(rig, Hostile("telemetry:mismatch", TOPICS.telemetry(topic_channel), encode(sample)),
              f"sync-mismatch-{topic_channel}-{sat}-{channel}")
    (line,) = [ln for ln in rig.log_lines()[before:] if " WARNING " in ln]
    assert f"sample of {sat}/{channel}" in line and f"names sat1/{topic_channel}" in line, line


def test_a_reason_quoting_the_wire_cannot_forge_log_lines(rig: Rig) -> None:
    """pydantic quotes a bad discriminator tag as sent: a newline in it used to start a new physical
    line of flightd's log, which could read as a record of its own."""
    forged = "ping\n2026-01-01 00:00:00,000 ERROR flightd: forged"
    doc = {"schema_version": 1, "command_id": "fz-forge", "issued_utc": 1.0e9, "body": {"action": forged}}
    before = len(rig.log_lines())
    check_one(rig, Hostile("command:forge", TOPICS.command, json.dumps(doc).encode(),
                           reply_topic=TOPICS.command_reply("fz-forge")), "sync-forge")
    (line,) = [ln for ln in rig.log_lines()[before:] if "fz-forge" in ln]
    assert "ping\\n2026-01-01" in line, line


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
"""Any JSON value, non-finite floats and lone surrogates (escaped by json.dumps) included."""

INBOUND = {"job": (TOPICS.job_submit, "job_id"), "command": (TOPICS.command, "command_id"),
           "sequence": (TOPICS.sequence_command, "command_id"), "upload": (TOPICS.upload("fz-json"), None),
           "telemetry": (TOPICS.telemetry("power"), None), "status": (TOPICS.status, None)}


def test_any_json_document_on_any_topic_is_answered_once(rig: Rig) -> None:
    """Hypothesis' own JSON documents, mixed into each message's real keys (so that validation gets
    past the envelope's fields to the ones inside), on every inbound topic."""
    counter = itertools.count()

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(target=st.sampled_from(sorted(INBOUND)), extra=st.dictionaries(st.text(max_size=12), JSON, max_size=6),
           keep_id=st.booleans())
    def fuzz(target: str, extra: dict[str, object], keep_id: bool) -> None:
        n = next(counter)
        topic, id_key = INBOUND[target]
        doc: dict[str, object] = {"schema_version": 1, **extra}
        reply = None
        if id_key is not None and keep_id:
            doc[id_key] = f"fz-json-{n}"
            reply = TOPICS.job_state(f"fz-json-{n}") if target == "job" else TOPICS.command_reply(f"fz-json-{n}")
        elif target == "upload":
            doc["upload_id"], reply = "fz-json", TOPICS.upload_progress("fz-json")
        check_one(rig, Hostile(f"{target}:json", topic, json.dumps(doc).encode(), reply_topic=reply), f"sync-json-{n}")

    fuzz()
