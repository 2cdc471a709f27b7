"""link.topics.TopicMap: topic strings built and parsed in one place (upload and job ids)."""

from __future__ import annotations

import pytest

from link.topics import REPLAY_ROOT, TopicMap

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
