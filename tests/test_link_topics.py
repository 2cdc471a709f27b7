"""link.topics.TopicMap: topic strings built and parsed in one place (upload and job ids), and the
ids that become topic levels."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from link.codec import peek_field
from link.messages import TOPIC_ID_PATTERN, Command, JobRequest, Telemetry, TopicId, WireModel, is_identifier
from link.sequence import SequenceCommand
from link.topics import REPLAY_ROOT, TopicMap
from link.uplink import UploadBegin, UploadChunk, UploadQuery

SAT = TopicMap("sat-1")


@pytest.mark.parametrize("topics", [SAT, TopicMap("sat-1", REPLAY_ROOT), TopicMap("s2", "a/b/c")])
def test_upload_id_round_trips_through_the_upload_topic(topics: TopicMap) -> None:
    assert topics.upload_id_of(topics.upload("up-7")) == "up-7"
    assert topics.upload_id_of(topics.upload_progress("up-7")) is None  # the reply, not the upload


def test_upload_topics_of_other_satellites_or_trees_are_not_ours() -> None:
    assert SAT.upload_id_of(TopicMap("sat-2").upload("u1")) is None
    assert SAT.upload_id_of(TopicMap("sat-1", REPLAY_ROOT).upload("u1")) is None
    assert SAT.upload_id_of(f"{SAT.base}/models/download/u1") is None
    assert SAT.upload_id_of(f"{SAT.base}/models/upload") is None
    assert SAT.upload_id_of("") is None


def test_job_ids_parse_from_state_and_result_topics_only() -> None:
    assert SAT.job_id_of(SAT.job_state("j-1")) == "j-1"
    assert SAT.job_id_of(SAT.result("j-1")) == "j-1"
    assert SAT.job_id_of(SAT.job_submit) is None
    assert SAT.job_id_of(SAT.upload("j-1")) is None
    assert SAT.job_id_of(TopicMap("sat-2").result("j-1")) is None


def test_ids_that_would_break_the_topic_tree_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid upload id"):
        SAT.upload("a/b")
    with pytest.raises(ValueError, match="invalid satellite id"):
        TopicMap("sat/1")


# -------------------------------------------- ids a refusal or reply puts in a topic (issue 10 item 7)

REPLY_IDS = [(JobRequest, "job_id"), (Command, "command_id"), (SequenceCommand, "command_id"),
             (UploadBegin, "upload_id"), (UploadChunk, "upload_id"), (UploadQuery, "upload_id"),
             (Telemetry, "sat"), (Telemetry, "channel")]


@pytest.mark.parametrize(("model", "name"), REPLY_IDS)
def test_every_inbound_id_that_names_a_reply_topic_is_a_topic_level(model: type[WireModel], name: str) -> None:
    """A message whose id validates but cannot be a reply's topic level ran and was never answered
    (a SequenceCommand's ``command_id`` allowed ``.``: its CommandReply failed validation, a stack trace
    and no reply, found by bench.fuzz)."""
    assert model.model_json_schema()["properties"][name]["pattern"] == TOPIC_ID_PATTERN


@given(st.one_of(st.text(max_size=70), st.from_regex(TOPIC_ID_PATTERN), st.from_regex(r"\A[A-Za-z0-9]{1,64}\n\Z")))
@settings(max_examples=300)
def test_is_identifier_agrees_with_pydantic_on_every_string(value: str) -> None:
    """Python's ``$`` matches before a final newline and pydantic's does not: ``re.match`` let
    ``"job1\\n"`` through as a readable id, and the rejected event built with it failed validation."""
    try:
        TypeAdapter(TopicId).validate_python(value)
        accepted = True
    except ValidationError:
        accepted = False
    assert is_identifier(value) == accepted
    assert (peek_field(json.dumps({"job_id": value}).encode(), "job_id") is not None) == accepted


def test_telemetry_channel_is_read_from_its_topic() -> None:
    assert SAT.telemetry_channel_of(SAT.telemetry("power")) == "power"
    assert SAT.telemetry_channel_of(TopicMap("sat-2").telemetry("power")) is None
    assert SAT.telemetry_channel_of(f"{SAT.base}/tlm/\U0001d50fob") is None
