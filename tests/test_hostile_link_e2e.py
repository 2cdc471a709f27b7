"""Issue 10, items 1 and 5, end to end: real flightd processes on a real Mosquitto.

- numbers that cannot be right are refused at the link with the field named, on every topic, and
  nothing of them reaches the journal; garbage on a hard limit's telemetry sends the governor SAFE;
- a job file saved with a UTF-8 byte-order mark runs; an empty payload is named as such;
- the ground refuses, before publishing, a payload over the limits flightd advertises in its status;
- two flightd with one satellite id do not take the session from each other: the one that finds the
  other stops (exit status 3) with an event and a log line, and never flaps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from flight.governor import GovernorConfig
from flight.session import EXIT_SESSION_CONFLICT
from ground.client import GroundClient, PayloadTooLarge
from hil.mosquitto_broker import MosquittoBroker
from link.codec import WireError, decode, encode
from link.messages import CommandReply, Event, EventKind, JobState, JobStateEvent, Mode, Status, Telemetry
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from tests.support import FlightdProcess, copy_bundled, wait_online, wait_until

DIGITS = "digits-int8"
TOPICS = TopicMap("sat1")
BOM = b"\xef\xbb\xbf"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return copy_bundled(tmp_path / "models", DIGITS)


def digits_input() -> dict[str, object]:
    x = np.full((1, 1, 8, 8), 0.25, dtype="<f4")
    return {"image": {"dtype": "float32", "shape": [1, 1, 8, 8], "data_b64": base64.b64encode(x.tobytes()).decode()}}


def job_json(job_id: str, **fields: str) -> bytes:
    """A JSON job whose extra ``fields`` are spliced in as raw JSON literals (``NaN`` and the like)."""
    text = json.dumps({"schema_version": 1, "job_id": job_id, "model": DIGITS, "inputs": digits_input()})
    extra = "".join(f', "{k}": {v}' for k, v in fields.items())
    return (text[:-1] + extra + "}").encode()


def journal_ids(data_dir: Path) -> set[str]:
    path = data_dir / "journal.sqlite3"
    if not path.exists():
        return set()
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT job_id FROM jobs")}


class Watcher:
    """Everything published under the satellite's topics, with arrival order kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[str, bytes]] = []
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.wait({self.task}, timeout=5)

    async def _run(self) -> None:
        async with make_client(BrokerUrl.parse(self.url)) as client:
            await client.subscribe(f"{TOPICS.base}/#", qos=1)
            self.ready.set()
            async for m in client.messages:
                payload = bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b""
                self.seen.append((str(m.topic), payload))

    def states(self, job_id: str) -> list[JobStateEvent]:
        topic = TOPICS.job_state(job_id)
        return [decode(p, JobStateEvent).message for t, p in self.seen if t == topic and p]

    def events(self) -> list[Event]:
        out = []
        for t, p in self.seen:
            if t == TOPICS.events:
                with contextlib.suppress(WireError):
                    out.append(decode(p, Event).message)
        return out

    def reply(self, command_id: str) -> CommandReply | None:
        topic = TOPICS.command_reply(command_id)
        replies = [decode(p, CommandReply).message for t, p in self.seen if t == topic]
        return replies[0] if replies else None


# ------------------------------------------------------------------------------------------ item 1


async def test_impossible_numbers_are_rejected_naming_the_field_and_never_journaled(
    mosquitto: MosquittoBroker, flightd: FlightdProcess
) -> None:
    cases = {
        "nan-deadline": ({"deadline_utc": "NaN"}, "deadline_utc: non-finite number NaN"),
        "inf-submitted": ({"submitted_utc": "Infinity"}, "submitted_utc: non-finite number Infinity"),
        "huge-deadline": ({"deadline_utc": "1e999"}, "deadline_utc: non-finite number Infinity"),
        "past-1970": ({"deadline_utc": "-5.0"}, "deadline_utc: Input should be greater than or equal to 0"),
        "big-priority": ({"priority": str(2**64)}, "priority: an integer of 20 digits is outside the 64-bit range"),
    }
    async with Watcher(mosquitto.url) as watch, make_client(BrokerUrl.parse(mosquitto.url)) as pub:
        for job_id, (fields, _) in cases.items():
            await pub.publish(TOPICS.job_submit, job_json(job_id, **fields), qos=1)
        command = b'{"schema_version": 1, "command_id": "nan-cmd", "issued_utc": NaN, "body": {"action": "ping"}}'
        await pub.publish(TOPICS.command, command, qos=1)
        sequence = (b'{"schema_version": 1, "command_id": "nan-seq", "issued_utc": 1.8e9, "body": {"action": '
                    b'"upload_sequence", "sequence": {"sequence_id": "s", "entries": [{"name": "a", "trigger": '
                    b'{"kind": "after", "delay_s": NaN}, "job": {"model": "m", "inputs": {"x": {"dtype": '
                    b'"float32", "shape": [1], "data_b64": "AAAAAA=="}}}}]}}}')
        await pub.publish(TOPICS.sequence_command, sequence, qos=1)
        await wait_until(lambda: all(watch.states(j) for j in cases) and watch.reply("nan-cmd") is not None
                         and watch.reply("nan-seq") is not None, 15,
                         "a state event for every job and a reply to each command")
        for job_id, (_, reason) in cases.items():
            [event] = watch.states(job_id)
            assert event.state is JobState.REJECTED and event.reason is not None and reason in event.reason, event
        reply = watch.reply("nan-cmd")
        assert reply is not None and not reply.ok and "issued_utc: non-finite number NaN" in (reply.error or "")
        reply = watch.reply("nan-seq")
        assert reply is not None and not reply.ok, reply
        assert "body.sequence.entries.0.trigger.delay_s: non-finite number NaN" in (reply.error or ""), reply
        # the daemon still works
        async with GroundClient(mosquitto.url, "sat1") as ground:
            job = await ground.submit(DIGITS, {"image": np.zeros((1, 1, 8, 8), np.float32)})
            await ground.wait_result(job.job_id)
    assert not journal_ids(flightd.data_dir) & set(cases)
    log = flightd.log()
    assert "rejected job nan-deadline" in log and "Traceback" not in log


PERIOD = 0.2
GOVERNED = GovernorConfig(telemetry_period_s=PERIOD, stale_periods=100.0, required_channels=("power", "thermal"),
                          safe_min_dwell_s=0.5, mode_min_dwell_s=60.0)
POWER = {"soc": 0.9, "battery_v": 15.8, "battery_wh": 0.9 * 43.0, "solar_w": 80.0, "load_w": 25.0, "bus_w": 15.0,
         "compute_w": 8.0, "sunlit": 1.0}


@pytest.mark.parametrize("board_c", ["NaN", "-300.0"])
async def test_garbage_on_a_hard_limit_sends_flightd_safe(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path, board_c: str
) -> None:
    """Healthy telemetry, then thermal samples with a board temperature no sensor can read: flightd
    goes SAFE on the board limit's debounce (a few periods), long before thermal would be stale."""
    env = {"ORBITD_GOVERNOR": GOVERNED.model_dump_json(), "ORBITD_CONTROL_PERIOD_S": "0.1"}
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir, env=env)
    garbage = asyncio.Event()
    t0 = time.monotonic()

    async def publish() -> None:
        async with make_client(BrokerUrl.parse(mosquitto.url)) as client:
            while True:
                t = time.monotonic() - t0
                power = Telemetry(sat="sat1", channel="power", t_s=t, values=POWER)
                await client.publish(TOPICS.telemetry("power"), encode(power), qos=0)
                thermal = {"schema_version": 1, "sat": "sat1", "channel": "thermal", "t_s": t,
                           "values": {"board_c": "BOARD", "radiator_c": 5.0}}
                text = json.dumps(thermal).replace('"BOARD"', board_c if garbage.is_set() else "35.0")
                await client.publish(TOPICS.telemetry("thermal"), text.encode(), qos=0)
                await asyncio.sleep(PERIOD)

    proc.start()
    try:
        async with Watcher(mosquitto.url) as watch:
            await wait_online(mosquitto.url)
            publisher = asyncio.create_task(publish())

            def modes() -> list[Event]:
                return [e for e in watch.events() if e.kind is EventKind.MODE]

            await wait_until(lambda: any(e.details["mode"] == Mode.NOMINAL.value for e in modes()), 15, "NOMINAL")
            n = len(modes())
            garbage.set()
            t_garbage = time.monotonic()
            await wait_until(lambda: len(modes()) > n, 10, "a mode change after the garbage began")
            elapsed = time.monotonic() - t_garbage
            publisher.cancel()
            safe = modes()[n]
            assert safe.details["mode"] == Mode.SAFE.value, safe
            assert any("board_ceiling tripped" in r for r in safe.details["reasons"]), safe.details
            assert elapsed < 0.5 * GOVERNED.stale_periods * PERIOD, elapsed  # the limit, not staleness
    finally:
        proc.stop()
    assert "Traceback" not in proc.log()


# ------------------------------------------------------------------------------------------ item 5


async def test_job_file_saved_with_a_bom_runs(mosquitto: MosquittoBroker, flightd: FlightdProcess,
                                             tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_bytes(BOM + job_json("bom-1"))
    async with GroundClient(mosquitto.url, "sat1") as ground:
        waiter = asyncio.create_task(ground.wait_result("bom-1", timeout_s=30))
        await asyncio.sleep(0.2)
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-q", "1",
                        "-t", TOPICS.job_submit, "-f", str(path)], check=True)
        fetched = await waiter
    assert fetched.outputs["logits"].shape == (1, 10)


async def test_empty_payloads_are_named_as_empty(mosquitto: MosquittoBroker, flightd: FlightdProcess) -> None:
    async with Watcher(mosquitto.url) as watch, make_client(BrokerUrl.parse(mosquitto.url)) as pub:
        await pub.publish(TOPICS.job_submit, b"", qos=1)
        await pub.publish(TOPICS.job_submit, b" \r\n", qos=1)
        await wait_until(lambda: len([e for e in watch.events() if e.kind is EventKind.REJECTED]) >= 2, 10,
                         "two rejection events")
        reasons = [e.message for e in watch.events() if e.kind is EventKind.REJECTED]
    assert reasons[0] == "empty payload (0 bytes): expected a JSON message or an ORB1 frame", reasons
    assert reasons[1].startswith("blank payload: 3 bytes of white space"), reasons
    assert "malformed JSON" not in flightd.log()


async def test_submit_refuses_on_the_ground_what_flightd_or_the_broker_would_refuse(tmp_path: Path,
                                                                                   models_dir: Path) -> None:
    broker = MosquittoBroker(tmp_path / "mosquitto", max_packet_bytes=40_000)
    broker.start()
    env = {"ORBITD_LINK__MAX_PAYLOAD_BYTES": "65536", "ORBITD_LINK__BROKER_MAX_PACKET_BYTES": "40000"}
    proc = FlightdProcess(broker.url, tmp_path / "data", models_dir, env=env)
    proc.start()
    try:
        await wait_online(broker.url)
        async with GroundClient(broker.url, "sat1") as ground:
            status = await ground.status()
            assert (status.max_payload_bytes, status.broker_max_packet_bytes) == (65536, 40000)
            big = np.zeros((1, 1, 100, 250), np.float32)  # 100 kB: over flightd's limit
            with pytest.raises(PayloadTooLarge, match=r"exceeds the 65536-byte limit flightd on sat1 advertises "
                                                      r"\(link\.max_payload_bytes\); nothing was sent"):
                await ground.submit(DIGITS, {"image": big}, job_id="too-big")
            middling = np.zeros((1, 1, 100, 120), np.float32)  # 48 kB: flightd would take it, the broker not
            with pytest.raises(PayloadTooLarge, match=r"exceeds the broker's max_packet_size of 40000 bytes "
                                                      r"\(advertised by flightd on sat1\)"):
                await ground.submit(DIGITS, {"image": middling}, job_id="too-big-for-the-broker")
            job = await ground.submit(DIGITS, {"image": np.zeros((1, 1, 8, 8), np.float32)})
            await ground.wait_result(job.job_id)
        async with GroundClient(broker.url, "sat1", max_packet_bytes=500) as ground:  # known to the client
            with pytest.raises(PayloadTooLarge, match=r"max_packet_size of 500 bytes \(given to this client\)"):
                await ground.submit(DIGITS, {"image": np.zeros((1, 1, 8, 8), np.float32)}, job_id="small-limit")
        assert proc.alive()
    finally:
        proc.stop()
        broker.stop()
    assert "rejected job" not in proc.log()  # nothing reached flightd
    assert not journal_ids(tmp_path / "data") & {"too-big", "too-big-for-the-broker", "small-limit"}


def link_losses(proc: FlightdProcess) -> int:
    return proc.log().count("lost or refused")


async def test_a_second_flightd_with_the_same_sat_refuses_to_start(
    mosquitto: MosquittoBroker, flightd: FlightdProcess, tmp_path: Path, models_dir: Path
) -> None:
    async with Watcher(mosquitto.url) as watch:
        second = FlightdProcess(mosquitto.url, tmp_path / "second" / "data", models_dir)
        (tmp_path / "second").mkdir()
        second.start()
        try:
            assert second.proc is not None
            rc = await asyncio.to_thread(second.proc.wait, 30)
        finally:
            second.stop()
        assert rc == EXIT_SESSION_CONFLICT, second.log()
        await wait_until(lambda: any("another flightd serves satellite sat1" in e.message for e in watch.events()),
                         5, "the yielding flightd's event")
    event = next(e for e in watch.events() if "another flightd serves satellite sat1" in e.message)
    assert event.kind is EventKind.ERROR and event.severity == "critical"
    assert "another flightd serves satellite sat1" in second.log()
    assert link_losses(flightd) == 0, flightd.log()  # the second never took the session
    async with GroundClient(mosquitto.url, "sat1") as ground:
        job = await ground.submit(DIGITS, {"image": np.zeros((1, 1, 8, 8), np.float32)})
        await ground.wait_result(job.job_id)
        assert (await ground.status()).instance_id == event.details["rival_instance_id"]
    assert flightd.alive()
    assert journal_ids(tmp_path / "second" / "data") == set()


async def test_two_flightd_started_together_settle_on_one_and_never_flap(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path
) -> None:
    procs = [FlightdProcess(mosquitto.url, tmp_path / name / "data", models_dir) for name in ("a", "b")]
    for p in procs:
        p.data_dir.parent.mkdir()
    for p in procs:
        p.start()
    try:
        await wait_until(lambda: sum(p.alive() for p in procs) == 1, 30, "one of the two to stop")
        [loser] = [p for p in procs if not p.alive()]
        [winner] = [p for p in procs if p.alive()]
        assert loser.proc is not None and loser.proc.returncode == EXIT_SESSION_CONFLICT, loser.log()
        await wait_online(mosquitto.url)
        losses = link_losses(winner)
        assert losses <= 3, winner.log()  # a takeover or so while both started, not ~180 in 20 s
        async with GroundClient(mosquitto.url, "sat1") as ground:
            jobs = [await ground.submit(DIGITS, {"image": np.zeros((1, 1, 8, 8), np.float32)}) for _ in range(5)]
            for job in jobs:
                await ground.wait_result(job.job_id)
        await asyncio.sleep(3.0)
        assert link_losses(winner) == losses and winner.alive(), winner.log()  # no flapping since
        ids = {j.job_id for j in jobs}
        assert ids <= journal_ids(winner.data_dir)
        assert not ids & journal_ids(loser.data_dir)
    finally:
        for p in procs:
            p.stop()


async def publish_status(url: str, status: Status) -> None:
    async with make_client(BrokerUrl.parse(url)) as client:
        await client.publish(TOPICS.status, encode(status), qos=1, retain=True)


async def test_an_older_rival_seen_while_connected_makes_flightd_leave_at_once(
    mosquitto: MosquittoBroker, flightd: FlightdProcess
) -> None:
    """The race the check before connecting cannot see (both started at once): the status topic, which
    flightd watches while connected, shows an older instance online. flightd leaves the session
    without publishing in it (the retained status stays the rival's) and exits with status 3."""
    async with GroundClient(mosquitto.url, "sat1") as ground:
        own = await ground.status()
        assert own.instance_id is not None and own.started_utc is not None
        rival = own.model_copy(update={"instance_id": "rival-older", "started_utc": own.started_utc - 60.0,
                                       "at_utc": time.time()})
        await publish_status(mosquitto.url, rival)
        assert flightd.proc is not None
        rc = await asyncio.to_thread(flightd.proc.wait, 15)
        assert rc == EXIT_SESSION_CONFLICT, flightd.log()
        assert (await ground.status()).instance_id == "rival-older"
    assert "another flightd serves satellite sat1" in flightd.log() and "Traceback" not in flightd.log()


async def test_a_younger_rival_is_left_to_yield(mosquitto: MosquittoBroker, flightd: FlightdProcess) -> None:
    async with GroundClient(mosquitto.url, "sat1") as ground:
        own = await ground.status()
        assert own.started_utc is not None
        rival = own.model_copy(update={"instance_id": "rival-younger", "started_utc": own.started_utc + 60.0,
                                       "at_utc": time.time()})
        await publish_status(mosquitto.url, rival)
        await asyncio.sleep(2.5)  # a heartbeat period and more
        assert flightd.alive()
        assert (await ground.status()).instance_id == own.instance_id  # its heartbeat took the status back
