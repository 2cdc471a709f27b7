"""The journal against real storage faults (issue 10 item 3): a full tmpfs, an ext4 file system turned
read-only by an error or shut down (EIO), a journal corrupted byte by byte, a directory that cannot
hold it. Each ends in a defined state: a :class:`JournalFault` naming the path and what failed, the
whole transaction rolled back, and a journal that takes writes again once a probe commits.

The daemon's side (intake paused and resumed, jobs requeued, events, exit code 2) is in
tests/test_storage_faults_e2e.py.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from flight.journal import JobJournal, JournalFault
from flight.journal_recovery import check_file, open_journal
from flight.journal_writer import JournalWriter
from flight.supervisor import restart_on_failure
from link.messages import JobState
from tests.storage_faults import LoopExt4, Tmpfs, corrupt_page, root_page


def add(job_id: str, request: bytes = b"r", now: float = 1.0):  # type: ignore[no-untyped-def]
    return lambda j: j.add(job_id, "m", "1.0.0", 5, None, request, now)


async def test_a_full_disk_fails_the_whole_transaction_then_a_probe_resumes(tmp_path: Path) -> None:
    faults: list[JournalFault | None] = []
    with Tmpfs(tmp_path / "disk", 4 << 20) as disk:
        path = disk.path / "journal.sqlite3"
        writer = JournalWriter(path, on_fault=faults.append)
        try:
            assert await writer.submit(add("before"))
            disk.fill()
            big = bytes(256 * 1024)
            first, second = writer.submit(add("a", big)), writer.submit(add("b", b"small"))  # one transaction
            results = await asyncio.gather(first, second, return_exceptions=True)
            assert all(isinstance(r, JournalFault) for r in results), results
            fault = results[0]
            assert isinstance(fault, JournalFault)
            assert str(path) in str(fault) and "full" in fault.reason and "0 B free" in fault.reason, fault
            assert writer.fault is not None and faults == [writer.fault]
            reader = JobJournal(path)
            assert reader.get("a") is None and reader.get("b") is None and reader.get("before") is not None
            with pytest.raises(JournalFault):  # still full: the probe says so and the fault stands
                await writer.probe(2.0, 1 << 20)
            assert writer.fault is not None
            disk.free()
            await writer.probe(3.0, 1 << 20)
            assert writer.fault is None and faults[-1] is None
            assert await writer.submit(add("a", big))  # the connection begins transactions again
            assert reader.get("a") is not None
            reader.close()
        finally:
            writer.close()


@pytest.mark.parametrize("fault", ["read-only", "io-error"])
async def test_a_failed_file_system_is_a_fault_until_remounted_then_the_probe_reopens(
    tmp_path: Path, fault: str
) -> None:
    faults: list[JournalFault | None] = []
    with LoopExt4(tmp_path / "disk.img", tmp_path / "disk") as fs:
        path = fs.path / "journal.sqlite3"
        writer = JournalWriter(path, on_fault=faults.append)
        reader = JobJournal(path)
        try:
            assert await writer.submit(add("before"))
            fs.make_read_only() if fault == "read-only" else fs.shut_down()
            with pytest.raises(JournalFault) as info:
                await writer.submit(add("during"))
            words = "read-only file system" if fault == "read-only" else "disk I/O error"
            assert words in info.value.reason and str(path) in str(info.value), info.value
            with pytest.raises(JournalFault):
                await writer.probe(2.0, 65536)
            fs.remount()
            await writer.probe(3.0, 65536)  # a new connection on the new mount
            assert writer.fault is None and faults[-1] is None
            assert await writer.submit(add("after"))
            reader.reopen()
            assert reader.get("after") is not None and reader.get("before") is not None
        finally:
            reader.close()
            writer.close()


async def test_a_probe_never_starts_an_empty_journal_where_a_file_system_is_missing(tmp_path: Path) -> None:
    """While the journal's file system is not mounted its path is an empty directory: a probe there
    must fail, not create a new journal that the remounted file system would then hide."""
    with LoopExt4(tmp_path / "disk.img", tmp_path / "disk") as fs:
        path = fs.path / "journal.sqlite3"
        writer = JournalWriter(path)
        try:
            assert await writer.submit(add("kept"))
            fs.detach()
            with pytest.raises(JournalFault) as info:
                await writer.probe(2.0, 65536)
            assert "is its file system mounted" in info.value.reason
            assert list(fs.path.iterdir()) == []  # nothing created in the bare directory
            fs.remount()
            await writer.probe(3.0, 65536)
            reader = JobJournal(path)
            assert reader.get("kept") is not None
            reader.close()
        finally:
            writer.close()


def test_a_directory_that_cannot_hold_the_journal_is_named_and_nothing_hangs(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "data" / "journal.sqlite3"
    with pytest.raises(JournalFault) as info:
        JobJournal(path)
    assert str(path) in str(info.value) and "cannot create its directory" in str(info.value)
    outcome: list[BaseException | None] = []

    def open_writer() -> None:
        try:
            JournalWriter(path).close()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=open_writer, daemon=True)
    thread.start()
    thread.join(10)
    assert outcome and isinstance(outcome[0], JournalFault), "the writer must raise, not wait for ever"


def test_a_read_only_or_full_file_system_at_start_is_a_fault_naming_the_path(tmp_path: Path) -> None:
    with Tmpfs(tmp_path / "ro", 1 << 20, read_only=True) as ro:
        with pytest.raises(JournalFault) as info:
            open_journal(ro.path / "journal.sqlite3")
        assert str(ro.path / "journal.sqlite3") in str(info.value) and "read-only" in str(info.value)
    with Tmpfs(tmp_path / "full", 1 << 20) as full:
        full.fill()
        with pytest.raises(JournalFault) as info:
            open_journal(full.path / "journal.sqlite3")
        assert "full" in str(info.value), info.value


def make_journal(path: Path) -> None:
    """Two queued jobs, two done jobs with unacknowledged results, one acknowledged."""
    j = JobJournal(path)
    for i in range(5):
        j.add(f"job-{i}", "m", "1.0.0", 5, None, f"request {i}".encode(), 10.0 + i)
    for i in (2, 3, 4):
        j.set_state(f"job-{i}", JobState.RUNNING, 20.0 + i)
        j.complete(f"job-{i}", f"result {i}".encode() * 100, 30.0 + i)
    j.ack_result("job-4", 40.0)
    j.close()  # a clean close checkpoints the WAL into the file


def test_a_corrupted_table_is_moved_aside_and_what_reads_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    make_journal(path)
    before = path.read_bytes()
    corrupt_page(path, root_page(path, "results"))
    report = open_journal(path)
    assert report.problem and report.moved_to is not None and report.moved_to.exists()
    assert report.moved_to.name.startswith("journal.sqlite3.corrupt-")
    assert len(report.moved_to.read_bytes()) == len(before)  # kept as it was, for analysis
    assert report.salvaged["jobs"] == 5 and "results" in report.unreadable
    assert report.lost_results == ["job-2", "job-3", "job-4"]
    text = report.describe()
    assert str(report.moved_to) in text and "job-2" in text and "not yet acknowledged" in text
    assert check_file(path, full=True) is None
    j = JobJournal(path)
    assert [r.job_id for r in j.jobs([JobState.QUEUED])] == ["job-0", "job-1"]
    assert j.request("job-0") == b"request 0"  # the queued jobs can still run
    j.close()


def test_a_journal_that_is_not_a_database_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    make_journal(path)
    corrupt_page(path, 1)  # the file header: SQLite no longer knows the file
    report = open_journal(path)
    assert report.problem is not None and "not a database" in report.problem
    assert report.moved_to is not None and report.moved_to.exists()
    assert sum(report.salvaged.values()) == 0
    assert check_file(path, full=True) is None
    j = JobJournal(path)
    assert j.jobs() == []
    j.close()
    again = open_journal(path)  # a sound journal is left alone
    assert again.problem is None and again.moved_to is None
    corrupt_page(path, 1)
    unchecked = open_journal(path, check="off")  # not checked, but too damaged to open: moved aside too
    assert unchecked.moved_to is not None and unchecked.problem and "not a database" in unchecked.problem


def test_a_sound_journal_passes_the_check_and_is_not_moved(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    make_journal(path)
    for check in ("quick", "full"):
        report = open_journal(path, check=check)  # type: ignore[arg-type]
        assert report.problem is None and report.moved_to is None and report.check_s > 0
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []


async def test_a_failing_task_is_restarted_and_one_failing_too_often_gives_up() -> None:
    calls: list[int] = []
    reports: list[tuple[str, str, float | None]] = []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"failure {len(calls)}")

    await restart_on_failure("flaky", flaky, lambda n, e, d: reports.append((n, str(e), d)), backoff_s=0.01)
    assert len(calls) == 3 and reports == [("flaky", "failure 1", 0.01), ("flaky", "failure 2", 0.02)]

    async def broken() -> None:
        raise ValueError("always")

    reports.clear()
    await asyncio.wait_for(restart_on_failure("broken", broken, lambda n, e, d: reports.append((n, str(e), d)),
                                              restarts=2, backoff_s=0.01), 5)
    assert [d for _, _, d in reports] == [0.01, 0.02, None]
