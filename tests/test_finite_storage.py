"""Nothing non-finite is written to the journal or the telemetry archive (issue 10, item 1), and
refusals that could themselves fail do not (an upload on a topic whose id breaks the id pattern).

SQLite stores a NaN REAL as NULL: a job whose deadline was NaN lost its deadline across a restart.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from flight.journal import JobJournal
from flight.registry import ModelRegistry
from flight.uplink import UplinkReceiver
from ground.tlm.archive import Archive, Unarchivable, topic_row
from ground.tlm.recorder import Recorder
from link.codec import decode, encode
from link.messages import Event, EventKind, JobState, Telemetry
from link.topics import TopicMap

TOPICS = TopicMap("sat1")


def test_the_journal_refuses_non_finite_times(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "journal.sqlite3")
    with pytest.raises(ValueError, match="deadline_utc nan is not a finite number"):
        journal.add("j-nan", "m", "1", 5, math.nan, b"{}", 1000.0)
    with pytest.raises(ValueError, match="now_utc inf is not a finite number"):
        journal.add("j-inf", "m", "1", 5, None, b"{}", math.inf)
    assert journal.get("j-nan") is None and journal.get("j-inf") is None
    assert journal.add("j-ok", "m", "1", 5, 2000.0, b"{}", 1000.0)
    with pytest.raises(ValueError, match="not a finite number"):
        journal.set_state("j-ok", JobState.FAILED, math.nan, "x")
    with pytest.raises(ValueError, match="not a finite number"):
        journal.complete("j-ok", b"result", -math.inf)
    record = journal.get("j-ok")
    assert record is not None and record.deadline_utc == 2000.0 and record.updated_utc == 1000.0
    journal.close()
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        rows = db.execute("SELECT deadline_utc, received_utc, updated_utc FROM jobs").fetchall()
    assert rows == [(2000.0, 1000.0, 1000.0)]


def raw_telemetry(value: str) -> bytes:
    return ('{"schema_version": 1, "sat": "sat1", "channel": "power", "t_s": ' + value + ', "values": {"soc": 0.5}}'
            ).encode()


def test_the_recorder_archives_no_message_with_a_non_finite_number(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite3", writable=True)
    recorder = Recorder(archive)
    good = encode(Telemetry(sat="sat1", channel="power", t_s=1.0, values={"soc": 0.5}))
    recorder.add(TOPICS.telemetry("power"), good, rx_utc=10.0)
    recorder.add(TOPICS.telemetry("power"), raw_telemetry("NaN"), rx_utc=11.0)
    recorder.add(TOPICS.telemetry("power"), raw_telemetry("1e999"), rx_utc=12.0)
    event = b'{"schema_version": 1, "kind": "error", "message": "m", "at_utc": 5.0, "details": {"x": [1, -Infinity]}}'
    recorder.add(TOPICS.events, event, rx_utc=13.0)
    recorder.add(TOPICS.status, b"not json at all", rx_utc=14.0)  # no numbers in it: kept as received
    recorder.flush()
    assert (recorder.received, recorder.refused, recorder.written) == (5, 3, 2)
    rows = list(archive.messages())
    assert [r.payload for r in rows] == [good, b"not json at all"]
    assert all(r.t_s is None or math.isfinite(r.t_s) for r in rows)
    archive.close()


def test_the_archive_refuses_a_row_with_a_non_finite_time(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite3", writable=True)
    good = encode(Telemetry(sat="sat1", channel="power", t_s=1.0, values={"soc": 0.5}))
    with pytest.raises(Unarchivable, match="t_s: non-finite number NaN"):
        topic_row(TOPICS.telemetry("power"), raw_telemetry("NaN"), rx_utc=1.0)
    with pytest.raises(Unarchivable, match="receive time nan"):
        topic_row(TOPICS.telemetry("power"), good, rx_utc=math.nan)
    row = topic_row(TOPICS.telemetry("power"), good, rx_utc=1.0)
    bad = (row[0], math.inf, *row[2:])
    with pytest.raises(Unarchivable, match="t_s inf is not a finite number"):
        archive.append([row, bad])
    assert archive.count() == 0  # one transaction: nothing of the batch
    archive.close()


def test_an_upload_on_a_topic_whose_id_breaks_the_pattern_is_refused_without_failing(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    (tmp_path / "models").mkdir()
    registry.scan()
    receiver = UplinkReceiver(registry, tmp_path / "staging", TOPICS, lambda: 1000.0)
    for upload_id in ("bad id", "-dash-first", "x" * 65, "ünïcode"):
        topic = f"{TOPICS.base}/models/upload/{upload_id}"
        out = receiver.on_message(topic, b'{"schema_version": 1, "kind": "query", "upload_id": "u"}')
        assert [t for t, _ in out] == [TOPICS.events], out  # no progress topic can name it
        event = decode(out[0][1], Event).message
        assert event.kind is EventKind.MODEL and "invalid upload id" in event.message and upload_id in event.message
