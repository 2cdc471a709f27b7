"""link.topics.topic_matches agrees with aiomqtt's Topic.matches (which flightd routed with before)."""

from __future__ import annotations

import aiomqtt
from hypothesis import given
from hypothesis import strategies as st

from link.topics import TopicMap, topic_matches

LEVELS = st.sampled_from(["orbitd", "sat1", "tlm", "power", "jobs", "submit", "models", "upload", "u1"])


@given(st.lists(LEVELS, min_size=1, max_size=5), st.lists(st.one_of(LEVELS, st.just("+")), min_size=1, max_size=5),
       st.booleans())
def test_agrees_with_aiomqtt(topic: list[str], topic_filter: list[str], hash_tail: bool) -> None:
    t = "/".join(topic)
    f = "/".join([*topic_filter, "#"] if hash_tail else topic_filter)
    assert topic_matches(t, f) == aiomqtt.Topic(t).matches(f), (t, f)


def test_flightd_filters() -> None:
    topics = TopicMap("sat1")
    assert topic_matches(topics.telemetry("power"), topics.telemetry_all)
    assert not topic_matches(topics.telemetry("power") + "/x", topics.telemetry_all)
    assert not topic_matches(topics.job_submit, topics.telemetry_all)
    assert topic_matches(topics.upload("u1"), topics.upload_all)
    assert topic_matches(topics.job_submit, topics.job_submit)
    assert not topic_matches(topics.job_submit, TopicMap("sat2").job_submit)
    power = topics.telemetry("power")
    assert topic_matches(power, f"{topics.root}/#") and aiomqtt.Topic(power).matches(f"{topics.root}/#")
