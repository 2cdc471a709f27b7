"""flightd acknowledges a job submission to the broker only once the job is journaled: a kill -9 between
receipt and commit leaves the job with the broker (persistent session), which delivers it again to the
next flightd. With a PUBACK on receipt the broker would drop it and the job would be lost."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np

from flight.journal import JobJournal
from ground.client import GroundClient
from hil.mosquitto_broker import MosquittoBroker
from link.messages import JobState
from tests.support import FlightdProcess, copy_bundled, wait_online


async def test_a_submission_received_but_not_journaled_survives_kill9(mosquitto: MosquittoBroker,
                                                                      tmp_path: Path) -> None:
    models = copy_bundled(tmp_path / "models", "digits-int8")
    data = tmp_path / "flightd"
    flightd = FlightdProcess(mosquitto.url, data, models, env={"ORBITD_EXECUTOR__PRELOAD": '["digits-int8"]'})
    flightd.start()
    try:
        await wait_online(mosquitto.url)
        # hold the journal's write lock: flightd receives the job but cannot commit it (sqlite waits 5 s)
        lock = sqlite3.connect(data / "journal.sqlite3", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        async with GroundClient(mosquitto.url, "sat1", timeout_s=5.0) as ground:
            job = await ground.prepare_job("digits-int8", {"image": np.zeros((1, 1, 8, 8), np.float32)},
                                           job_id="held-job")
            await ground.send_job(job)  # the broker holds it (PUBACK to us)
            await asyncio.sleep(1.0)  # delivered to flightd, which is blocked on the lock
            flightd.kill9()
            lock.execute("ROLLBACK")
            lock.close()
            assert "held-job" not in {r.job_id for r in JobJournal(data / "journal.sqlite3").jobs()}
            flightd.start()  # same client id, same session: the broker sends the unacknowledged job again
            fetched = await ground.wait_result("held-job", timeout_s=30)
        assert fetched.result.job_id == "held-job"
        record = JobJournal(data / "journal.sqlite3").get("held-job")
        assert record is not None and record.state is JobState.DONE and record.completions == 1
    finally:
        flightd.stop()
    assert "journal write failed" not in flightd.log()
