"""flightd (a real process, a real Mosquitto) against real storage faults (issue 10 item 3).

Each fault ends in a defined state while flightd keeps serving: an ``error`` event and log line, the
job whose write failed still queued (or refused, with the reason, at intake), intake paused with the
reason on the retained status, and everything resumed once a probe write commits. A data directory
that cannot hold the journal is a one-line start-up error naming the path, exit code 2; a corrupted
journal is moved aside and flightd starts with what could be read of it, said in an event.

Faults (tests/storage_faults.py): a size-limited tmpfs filled up while a job runs; an ext4 file system
on a loop device turned read-only by a file-system error, or shut down (every I/O fails with EIO),
then remounted; a journal corrupted byte by byte; a read-only or full file system, a file in the
path, a directory without write permission at start.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from ground.client import GroundClient, JobRejected
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode
from link.messages import Event, Status
from link.topics import TopicMap
from tests.storage_faults import LoopExt4, Tmpfs, corrupt_page, root_page
from tests.support import REPO, FlightdProcess, build_long_model, copy_bundled, wait_online, wait_until
from tests.test_flightd_e2e import DIGITS, collect_events, digits_sample, journal_rows

TOPICS = TopicMap("sat1")
LONG_X = np.random.default_rng(11).standard_normal((1, 16, 16, 16)).astype(np.float32)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    d = copy_bundled(tmp_path / "models", DIGITS)
    build_long_model(d)
    return d


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "flightd.toml"
    path.write_text("shutdown_grace_s = 0.0\n[journal]\nprobe_period_s = 0.5\n")
    return path


class EventLog:
    """Every event flightd publishes on a broker, from the moment the fixture subscribed."""

    def __init__(self) -> None:
        self.raw: list[tuple[str, bytes]] = []

    def all(self) -> list[Event]:
        return [decode(payload, Event).message for _, payload in self.raw]

    def find(self, *words: str) -> Event | None:
        """The first event whose message holds every one of ``words``."""
        return next((e for e in self.all() if all(w in e.message for w in words)), None)

    def said(self, *words: str) -> bool:
        return self.find(*words) is not None


@pytest.fixture
async def events(mosquitto: MosquittoBroker) -> AsyncIterator[EventLog]:
    log = EventLog()
    ready = asyncio.Event()
    collector = asyncio.create_task(collect_events(mosquitto.url, TOPICS.events, log.raw, ready))
    await ready.wait()
    try:
        yield log
    finally:
        collector.cancel()


async def wait_intake(ground: GroundClient, state: str, timeout_s: float = 20) -> Status:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status = await ground.status()
        if status.intake == state:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"intake stayed {status.intake} ({status.intake_reason}), not {state}")
        await asyncio.sleep(0.2)


async def test_a_full_disk_at_a_result_commit_pauses_intake_and_the_job_runs_again_once_freed(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path, config: Path, events: EventLog
) -> None:
    with Tmpfs(tmp_path / "data", 16 << 20) as disk:
        proc = FlightdProcess(mosquitto.url, disk.path, models_dir, config=config)
        try:
            proc.start()
            await wait_online(mosquitto.url)
            async with GroundClient(mosquitto.url, "sat1") as ground:
                await ground.submit("long", {"x": LONG_X}, job_id="full-1")
                await wait_until(lambda: journal_rows(disk.path).get("full-1", ("",))[0] == "running", 30, "a run")
                disk.fill()
                # the result's commit fails: the job stays queued, said on events and in the log
                await wait_until(lambda: events.said("full-1", "stays queued", "full"), 60, "the error event")
                assert events.said("intake paused", str(disk.path / "journal.sqlite3"))
                status = await wait_intake(ground, "paused")
                assert status.intake_reason and "database or disk is full" in status.intake_reason
                with pytest.raises(JobRejected) as info:
                    await ground.submit(DIGITS, {"image": digits_sample(1)}, job_id="while-full")
                assert "intake paused" in str(info.value) and "full" in str(info.value)
                assert (await ground.ping())["pong_utc"] > 0  # commands are still served
                assert proc.alive()
                disk.free()
                await ground.wait_result("full-1", timeout_s=90)
                assert (await wait_intake(ground, "open")).intake_reason is None
                assert events.said("takes writes again", "intake resumed")
                info_full = await ground.job("full-1")
                assert (info_full["state"], info_full["completions"], info_full["attempt"]) == ("done", 1, 2)
                job = await ground.submit(DIGITS, {"image": digits_sample(1)}, job_id="after-full")
                await ground.wait_result(job.job_id)
            assert journal_rows(disk.path)["after-full"] == ("done", 1)
            assert "while-full" not in journal_rows(disk.path)
            assert proc.terminate() == 0
            log = proc.log()
            assert "intake paused" in log and "takes writes again" in log and "Traceback" not in log
        finally:
            proc.stop()


@pytest.mark.parametrize("fault", ["read-only", "io-error"])
async def test_a_failed_file_system_pauses_intake_until_remounted(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path, config: Path, events: EventLog, fault: str
) -> None:
    with LoopExt4(tmp_path / "disk.img", tmp_path / "data") as fs:
        proc = FlightdProcess(mosquitto.url, fs.path, models_dir, config=config)
        try:
            proc.start()
            await wait_online(mosquitto.url)
            async with GroundClient(mosquitto.url, "sat1") as ground:
                before = await ground.submit(DIGITS, {"image": digits_sample(1)}, job_id="before-fault")
                await ground.wait_result(before.job_id, ack=False)
                fs.make_read_only() if fault == "read-only" else fs.shut_down()
                words = "read-only file system" if fault == "read-only" else "input/output error"
                with pytest.raises(JobRejected) as info:  # found by this job's intake
                    await ground.submit(DIGITS, {"image": digits_sample(1)}, job_id="at-fault")
                assert words in str(info.value), info.value
                status = await wait_intake(ground, "paused")
                assert status.intake_reason and words in status.intake_reason
                with pytest.raises(JobRejected) as info:
                    await ground.submit(DIGITS, {"image": digits_sample(1)}, job_id="while-paused")
                assert "intake paused" in str(info.value)
                assert events.said("intake paused", words)
                assert (await ground.ping())["pong_utc"] > 0 and proc.alive()
                fs.remount()
                await wait_intake(ground, "open")
                after = await ground.submit(DIGITS, {"image": digits_sample(1)}, job_id="after-fault")
                await ground.wait_result(after.job_id)
                assert (await ground.job("before-fault"))["state"] == "done"
            assert proc.terminate() == 0
            assert "Traceback" not in proc.log()
        finally:
            proc.stop()


@pytest.mark.parametrize("damage", ["results-page", "header"])
async def test_a_corrupted_journal_is_moved_aside_and_flightd_starts_with_what_reads(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path, config: Path, events: EventLog, damage: str
) -> None:
    data = tmp_path / "data"
    proc = FlightdProcess(mosquitto.url, data, models_dir, config=config)
    try:
        proc.start()
        await wait_online(mosquitto.url)
        async with GroundClient(mosquitto.url, "sat1") as ground:
            done = [(await ground.submit(DIGITS, {"image": digits_sample(1)}, job_id=f"done-{i}")).job_id
                    for i in range(2)]
            for job_id in done:
                await ground.wait_result(job_id, ack=False)  # results the ground has not acknowledged
            queued = [(await ground.submit("long", {"x": LONG_X}, job_id=f"queued-{i}")).job_id for i in range(3)]
        assert proc.terminate() == 0  # grace 0: the running one is requeued
        assert all(journal_rows(data)[i][0] == "queued" for i in queued)
        journal = data / "journal.sqlite3"
        corrupt_page(journal, 1 if damage == "header" else root_page(journal, "results"))

        proc.start()
        await wait_online(mosquitto.url)
        await wait_until(lambda: events.said("was corrupted", "moved aside"), 20, "the corruption event")
        event = events.find("was corrupted")
        assert event is not None
        assert event.kind.value == "error" and event.severity == "critical"
        moved = Path(str(event.details["moved_to"]))
        assert moved.exists() and moved.parent == data and moved.name.startswith("journal.sqlite3.corrupt-")
        async with GroundClient(mosquitto.url, "sat1") as ground:
            if damage == "results-page":  # the jobs table reads: the queued jobs still run, once
                assert event.details["lost_results"] == done and "done-0" in event.message
                await asyncio.gather(*(ground.wait_result(i, timeout_s=90) for i in queued))
                assert all(journal_rows(data)[i] == ("done", 1) for i in queued)
            else:
                assert "nothing" in event.message and journal_rows(data) == {}
            job = await ground.submit(DIGITS, {"image": digits_sample(1)}, job_id="after-corruption")
            await ground.wait_result(job.job_id)
        assert proc.terminate() == 0
        assert "was corrupted" in proc.log()
    finally:
        proc.stop()


def start_flightd(data_dir: Path, models_dir: Path) -> subprocess.CompletedProcess[str]:
    """flightd started on ``data_dir`` (no broker needed: it must stop before connecting)."""
    return subprocess.run(
        [sys.executable, "-m", "flight.cli", "--broker", "mqtt://127.0.0.1:9", "--data-dir", str(data_dir),
         "--models", str(models_dir)], capture_output=True, text=True, timeout=60, cwd=REPO)


def assert_startup_error(done: subprocess.CompletedProcess[str], path: Path, words: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith(f"flightd: journal {path}: ") and words in lines[-1], lines[-1]


def test_a_path_through_a_file_is_a_one_line_startup_error(tmp_path: Path, models_dir: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    data = blocker / "data"
    assert_startup_error(start_flightd(data, models_dir), data / "journal.sqlite3", "cannot create its directory")


def test_a_directory_without_write_permission_is_a_one_line_startup_error(tmp_path: Path, models_dir: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes whatever the permissions say: the read-only mount test covers it")
    data = tmp_path / "data"
    data.mkdir(mode=0o500)
    assert_startup_error(start_flightd(data, models_dir), data / "journal.sqlite3", "unable to open")


def test_a_read_only_or_full_file_system_is_a_one_line_startup_error(tmp_path: Path, models_dir: Path) -> None:
    with Tmpfs(tmp_path / "ro", 1 << 20, read_only=True) as ro:
        assert_startup_error(start_flightd(ro.path, models_dir), ro.path / "journal.sqlite3", "read-only file system")
    with Tmpfs(tmp_path / "full", 1 << 20) as full:
        full.fill()
        assert_startup_error(start_flightd(full.path, models_dir), full.path / "journal.sqlite3",
                             "database or disk is full")
