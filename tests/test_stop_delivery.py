"""However flightd goes down, what the ground sent meanwhile runs once when it returns (issue 10 item 9).

docs/icd.md promises that the broker keeps job submissions that arrive while flightd is down (a
persistent session). Each way down is tried against a real Mosquitto: SIGTERM (how systemd stops and
upgrades it), SIGINT, kill -9 (a crash, or a power cut of the board while the broker keeps its state),
and a broker restart while flightd is down (``persistence true``). Jobs are published with plain MQTT
(no acknowledgement from flightd can come while it is down); after the restart each completes exactly
once: its journal row says ``done`` with one completion and one attempt.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import numpy as np
import pytest

from ground.client import GroundClient
from hil.mosquitto_broker import MosquittoBroker
from link.codec import encode, pack_tensors
from link.messages import JobRequest
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from tests.support import FlightdProcess, build_long_model, copy_bundled, wait_online, wait_until
from tests.test_flightd_e2e import DIGITS, digits_sample, journal_rows

TOPICS = TopicMap("sat1")


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    d = copy_bundled(tmp_path / "models", DIGITS)
    build_long_model(d)
    return d


def job_payload(job_id: str, model: str = DIGITS, x: np.ndarray | None = None) -> bytes:
    inputs = {"image": digits_sample(1)} if x is None else {"x": x}
    tensors, binary = pack_tensors(inputs, framed=True)
    return encode(JobRequest(job_id=job_id, model=model, inputs=tensors), binary)


async def publish_jobs(url: str, payloads: dict[str, bytes]) -> None:
    """Publish each job on ``jobs/submit`` (QoS 1, PUBACK from the broker awaited), as the ground does."""
    async with make_client(BrokerUrl.parse(url)) as client:
        for payload in payloads.values():
            await client.publish(TOPICS.job_submit, payload, qos=1, timeout=10)


def stop(proc: FlightdProcess, way: str) -> None:
    """Take flightd down ``way``; a signal stop must exit 0."""
    assert proc.proc is not None
    if way == "kill9":
        proc.kill9()
        return
    proc.proc.send_signal(signal.SIGTERM if way == "sigterm" else signal.SIGINT)
    assert proc.proc.wait(30) == 0


async def wait_done_once(url: str, data_dir: Path, ids: list[str], timeout_s: float = 60) -> None:
    async with GroundClient(url, "sat1") as ground:
        await asyncio.gather(*(ground.wait_result(i, timeout_s=timeout_s) for i in ids))
    await wait_until(lambda: all(journal_rows(data_dir).get(i, ("", 0))[0] == "done" for i in ids), 10, "done rows")
    rows = journal_rows(data_dir)
    assert all(rows[i] == ("done", 1) for i in ids), {i: rows.get(i) for i in ids}


@pytest.mark.parametrize(
    ("way", "broker_restart"),
    [("sigterm", False), ("sigint", False), ("kill9", False), ("sigterm", True), ("kill9", True)],
    ids=["sigterm", "sigint", "kill9", "sigterm+broker-restart", "kill9+broker-restart"],
)
async def test_jobs_sent_while_down_run_once_after_restart(
    tmp_path: Path, models_dir: Path, way: str, broker_restart: bool
) -> None:
    broker = MosquittoBroker(tmp_path / "mosquitto", persistent=broker_restart)
    broker.start()
    proc = FlightdProcess(broker.url, tmp_path / "data", models_dir)
    try:
        proc.start()
        await wait_online(broker.url)
        stop(proc, way)
        payloads = {f"down-{way}-{i}": job_payload(f"down-{way}-{i}") for i in range(3)}
        await publish_jobs(broker.url, payloads)
        if broker_restart:  # the broker keeps flightd's session and its queued jobs on disk
            broker.stop()
            broker.start()
        proc.start()
        await wait_done_once(broker.url, proc.data_dir, list(payloads))
        assert proc.terminate() == 0
    finally:
        proc.stop()
        broker.stop()


async def test_jobs_arriving_during_the_drain_are_journaled_and_run_once_after_restart(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path
) -> None:
    """SIGTERM while a job runs: flightd drains (finishes it within ``shutdown_grace_s``); jobs that
    arrive meanwhile are journaled ``queued`` and not started, and run once after the restart."""
    config = tmp_path / "flightd.toml"
    config.write_text("shutdown_grace_s = 60.0\n")
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir, config=config)
    x = np.random.default_rng(7).standard_normal((1, 16, 16, 16)).astype(np.float32)
    try:
        proc.start()
        await wait_online(mosquitto.url)
        async with GroundClient(mosquitto.url, "sat1") as ground:
            slow = [(await ground.submit("long", {"x": x}, job_id=f"drain-long-{i}")).job_id for i in range(3)]
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: "stopping:" in proc.log(), 10, "the drain")
        late = {f"drain-late-{i}": job_payload(f"drain-late-{i}") for i in range(3)}
        await publish_jobs(mosquitto.url, late)
        assert proc.proc.wait(60) == 0
        rows = journal_rows(proc.data_dir)
        assert all(rows.get(i) == ("queued", 0) for i in late), rows  # journaled during the drain, not run
        proc.start()
        await wait_done_once(mosquitto.url, proc.data_dir, [*slow, *late])
        assert proc.terminate() == 0
    finally:
        proc.stop()


async def test_kill9_while_jobs_arrive_loses_none_and_runs_each_once(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path
) -> None:
    """A burst of submissions with kill -9 in the middle of it: a job flightd had received but not
    yet journaled when it died is delivered again by the broker (flightd acknowledges a submission
    to the broker only once it is journaled), and a job journaled but not yet acknowledged is
    recognised by its id and not run twice."""
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir)
    payloads = {f"burst-{i:03d}": job_payload(f"burst-{i:03d}") for i in range(120)}
    try:
        proc.start()
        await wait_online(mosquitto.url)
        publisher = asyncio.create_task(publish_jobs(mosquitto.url, payloads))
        await wait_until(lambda: len(journal_rows(proc.data_dir)) >= 20, 30, "20 jobs journaled")
        proc.kill9()
        await publisher
        proc.start()
        await wait_done_once(mosquitto.url, proc.data_dir, list(payloads), timeout_s=120)
        assert proc.terminate() == 0
    finally:
        proc.stop()
