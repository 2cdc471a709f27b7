"""flight.journal.JobJournal on real SQLite files: idempotent intake, attempts, completions, results,
requeue after a reset, purge, and what another connection / a killed writer leaves on disk."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flight.journal import JobJournal
from link.messages import JobState
from tests.support import REPO


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[JobJournal]:
    j = JobJournal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


def add(j: JobJournal, job_id: str, now: float, priority: int = 5, model: str = "m") -> bool:
    return j.add(job_id, model, "1.0.0", priority, None, f"request of {job_id}".encode(), now)


def test_add_is_idempotent(journal: JobJournal) -> None:
    assert add(journal, "a", 10.0) is True
    assert add(journal, "a", 20.0, priority=9, model="other") is False
    r = journal.get("a")
    assert r is not None
    assert (r.state, r.model, r.priority, r.received_utc, r.attempt, r.completions) == (
        JobState.QUEUED, "m", 5, 10.0, 0, 0)
    assert journal.request("a") == b"request of a"
    assert journal.get("nope") is None
    with pytest.raises(KeyError):
        journal.request("nope")


def test_add_in_a_terminal_state_with_reason(journal: JobJournal) -> None:
    assert journal.add("late", "m", None, 1, 5.0, b"x", 6.0, JobState.EXPIRED, "deadline past")
    r = journal.get("late")
    assert r is not None and r.state is JobState.EXPIRED and r.reason == "deadline past" and r.deadline_utc == 5.0


def test_set_state_counts_attempts_only_on_running(journal: JobJournal) -> None:
    add(journal, "a", 1.0)
    r = journal.set_state("a", JobState.RUNNING, 2.0)
    assert (r.state, r.attempt, r.updated_utc, r.reason) == (JobState.RUNNING, 1, 2.0, None)
    r = journal.set_state("a", JobState.QUEUED, 3.0, "preempted (safe mode)")
    assert (r.state, r.attempt, r.reason) == (JobState.QUEUED, 1, "preempted (safe mode)")
    r = journal.set_state("a", JobState.RUNNING, 4.0)
    assert r.attempt == 2
    r = journal.set_state("a", JobState.FAILED, 5.0, "boom")
    assert (r.state, r.attempt, r.reason, r.completions) == (JobState.FAILED, 2, "boom", 0)
    with pytest.raises(KeyError):
        journal.set_state("ghost", JobState.RUNNING, 6.0)


def test_complete_stores_result_and_counts_completions(journal: JobJournal) -> None:
    add(journal, "a", 1.0)
    journal.set_state("a", JobState.RUNNING, 2.0)
    r = journal.complete("a", b"RESULT-A", 3.0)
    assert (r.state, r.completions, r.attempt, r.updated_utc, r.reason) == (JobState.DONE, 1, 1, 3.0, None)
    assert journal.result("a") == b"RESULT-A"
    assert journal.request("a") == b"request of a"  # kept until the result is acknowledged (to recompute it)
    assert journal.unacked_results() == ["a"]
    # the journal counts honestly: a second completion is visible (the daemon's invariant is <= 1)
    assert journal.complete("a", b"RESULT-A2", 4.0).completions == 2
    assert journal.result("a") == b"RESULT-A2"


def test_ack_result(journal: JobJournal) -> None:
    for i, job in enumerate(["b", "a", "c"]):
        add(journal, job, float(i))
    journal.complete("c", b"C", 10.0)
    journal.complete("a", b"A", 11.0)
    journal.complete("b", b"B", 12.0)
    assert journal.unacked_results() == ["c", "a", "b"]  # oldest result first
    assert journal.ack_result("a", 13.0) is True
    assert journal.ack_result("a", 14.0) is False
    assert journal.ack_result("queued-job-without-result", 14.0) is False
    assert journal.unacked_results() == ["c", "b"]
    assert journal.result("a") == b""  # bytes dropped, row kept
    with pytest.raises(KeyError):
        journal.request("a")  # the request bytes are dropped once the ground holds the result
    assert journal.result("b") == b"B"
    assert journal.request("b") == b"request of b"


def test_requeue_running_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = JobJournal(path)
    for i, job in enumerate(["q", "r1", "r2", "d"]):
        add(j, job, float(i))
    j.set_state("r1", JobState.RUNNING, 10.0)
    j.set_state("r2", JobState.RUNNING, 11.0)
    j.set_state("d", JobState.RUNNING, 12.0)
    j.complete("d", b"D", 13.0)
    j.close()

    j = JobJournal(path)
    try:
        assert sorted(j.requeue_running(20.0, "requeued after restart")) == ["r1", "r2"]
        for job in ("r1", "r2"):
            r = j.get(job)
            assert r is not None
            assert (r.state, r.reason, r.updated_utc, r.attempt) == (JobState.QUEUED, "requeued after restart", 20.0, 1)
        assert j.get("q").state is JobState.QUEUED and j.get("q").reason is None  # type: ignore[union-attr]
        assert j.get("d").state is JobState.DONE  # type: ignore[union-attr]
        assert j.requeue_running(21.0, "again") == []
        assert [r.job_id for r in j.jobs([JobState.QUEUED])] == ["q", "r1", "r2"]
        assert j.unacked_results() == ["d"] and j.result("d") == b"D"
    finally:
        j.close()


def test_jobs_filter_order_limit_and_counts(journal: JobJournal) -> None:
    for job, t in (("late", 30.0), ("early", 10.0), ("mid", 20.0)):
        add(journal, job, t)
    journal.set_state("mid", JobState.CANCELLED, 40.0, "ground")
    assert [r.job_id for r in journal.jobs()] == ["early", "mid", "late"]
    assert [r.job_id for r in journal.jobs([JobState.QUEUED])] == ["early", "late"]
    assert [r.job_id for r in journal.jobs(limit=2)] == ["early", "mid"]
    assert [r.job_id for r in journal.jobs([JobState.CANCELLED, JobState.DONE])] == ["mid"]
    assert journal.counts() == {"queued": 2, "cancelled": 1}


def test_purge_forgets_only_old_terminal_jobs(journal: JobJournal) -> None:
    for job in ("old-done", "old-failed", "new-done", "old-queued", "old-running"):
        add(journal, job, 0.0)
    journal.complete("old-done", b"x", 100.0)
    journal.set_state("old-failed", JobState.FAILED, 100.0, "e")
    journal.complete("new-done", b"y", 300.0)
    journal.set_state("old-running", JobState.RUNNING, 50.0)
    assert sorted(journal.purge(200.0)) == ["old-done", "old-failed"]
    assert journal.get("old-done") is None and journal.result("old-done") is None
    assert {r.job_id for r in journal.jobs()} == {"new-done", "old-queued", "old-running"}
    assert journal.result("new-done") == b"y"
    assert journal.purge(200.0) == []


def test_other_connection_sees_committed_writes(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    writer = JobJournal(path)
    reader = JobJournal(path)
    try:
        add(writer, "a", 1.0)
        writer.set_state("a", JobState.RUNNING, 2.0)
        writer.complete("a", b"RES", 3.0)
        add(writer, "b", 4.0)
        r = reader.get("a")
        assert r is not None and r.state is JobState.DONE and r.completions == 1
        assert reader.result("a") == b"RES" and reader.get("b") is not None
        assert reader.add("b", "m", None, 5, None, b"", 5.0) is False  # idempotence holds across connections
    finally:
        writer.close()
        reader.close()


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from flight.journal import JobJournal
    from link.messages import JobState
    j = JobJournal(Path(sys.argv[1]))
    for i in range(20):
        j.add(f"job-{i:02d}", "m", None, 5, None, b"req", float(i))
    for i in range(5):
        j.set_state(f"job-{i:02d}", JobState.RUNNING, 100.0 + i)
    for i in range(3):
        j.complete(f"job-{i:02d}", b"result-%d" % i, 200.0 + i)
    print("written", flush=True)
    time.sleep(60)
""")


def test_kill9_after_commit_loses_nothing(tmp_path: Path) -> None:
    """A writer killed with SIGKILL (connection never closed, WAL not checkpointed): a new connection
    sees every commit, and the restart procedure requeues what was running."""
    path = tmp_path / "j.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"written"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "j.sqlite3-wal").exists()
    with sqlite3.connect(path) as db:  # a plain SQLite connection, not the journal's
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone() == (20,)
    j = JobJournal(path)
    try:
        assert sorted(j.requeue_running(300.0, "requeued after restart")) == ["job-03", "job-04"]
        assert j.counts() == {"queued": 17, "done": 3}
        assert j.unacked_results() == ["job-00", "job-01", "job-02"]
        assert [j.result(f"job-{i:02d}") for i in range(3)] == [b"result-0", b"result-1", b"result-2"]
        assert all(r.completions == (1 if r.state is JobState.DONE else 0) for r in j.jobs())
    finally:
        j.close()


def test_stored_request_and_result_are_checked_when_read_back(tmp_path: Path) -> None:
    """A bit flipped in a stored blob (here behind the journal's back, as the disk would) is refused on
    read; replace_result stores a new result with its own checksum and leaves completions alone."""
    from flight.journal import StoredCorruption, payload_digest

    path = tmp_path / "j.sqlite3"
    j = JobJournal(path)
    add(j, "a", 1.0)
    j.complete("a", b"RESULT-A", 2.0)
    with sqlite3.connect(path) as db:
        req_sum = db.execute("SELECT request_sha256 FROM jobs WHERE job_id = 'a'").fetchone()[0]
        res_sum = db.execute("SELECT payload_sha256 FROM results WHERE job_id = 'a'").fetchone()[0]
        assert (req_sum, res_sum) == (payload_digest(b"request of a"), payload_digest(b"RESULT-A"))
        db.execute("UPDATE jobs SET request = ? WHERE job_id = 'a'", (b"request of b",))
        db.execute("UPDATE results SET payload = ? WHERE job_id = 'a'", (b"RESULT-B",))
    with pytest.raises(StoredCorruption, match="stored request failed its sha256"):
        j.request("a")
    with pytest.raises(StoredCorruption, match="stored result failed its sha256") as caught:
        j.result("a")
    assert (caught.value.job_id, caught.value.what) == ("a", "result")
    assert j.replace_result("a", b"RESULT-A again", 3.0) is True
    assert j.result("a") == b"RESULT-A again" and j.get("a").completions == 1  # type: ignore[union-attr]
    # the TEST-ONLY flip changes the blob, not its checksum
    assert j.flip_stored_bits("a", "result", [0, 9]) == len(b"RESULT-A again") * 8
    with pytest.raises(StoredCorruption):
        j.result("a")
    assert j.flip_stored_bits("nope", "request", [1]) == 0
    j.ack_result("a", 4.0)
    assert j.replace_result("a", b"late", 5.0) is False and j.result("a") == b""
    j.close()


def test_a_journal_from_before_the_checksums_gets_the_columns_and_reads_its_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the schema as it was, one job done
        db.executescript(
            "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, state TEXT NOT NULL, model TEXT NOT NULL, version TEXT,"
            " priority INTEGER NOT NULL, deadline_utc REAL, received_utc REAL NOT NULL, updated_utc REAL NOT NULL,"
            " attempt INTEGER NOT NULL DEFAULT 0, completions INTEGER NOT NULL DEFAULT 0, reason TEXT, request BLOB);"
            "CREATE TABLE results (job_id TEXT PRIMARY KEY REFERENCES jobs(job_id), payload BLOB NOT NULL,"
            " created_utc REAL NOT NULL, acked_utc REAL);"
            "INSERT INTO jobs VALUES ('old', 'done', 'm', '1', 5, NULL, 1.0, 2.0, 1, 1, NULL, x'01');"
            "INSERT INTO results VALUES ('old', x'0203', 2.0, NULL);")
    j = JobJournal(path)
    assert j.result("old") == b"\x02\x03" and j.request("old") == b"\x01"  # no checksum: read unchecked
    add(j, "new", 3.0)
    assert j.request("new") == b"request of new"
    j.close()
