"""Issue 10: a flood on the uplink, end to end through a real Mosquitto into a real flightd.

flightd reads what arrives into bounded pipes (flight/inbox.py) and sheds the oldest of a pipe that
is full. Checked here: every hostile command is either answered or counted as shed (events, the
log and the Prometheus counter agree), the newest command is never the one shed, the sheds are said
in a few lines (not one per message), a ping right after the flood is answered, and no job
submission is lost among it (submissions are never shed).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.fuzz import DIGITS, Probe, legit_job, tracebacks
from hil.embedded_broker import free_port
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode
from link.messages import CommandReply, Event, JobState, JobStateEvent
from link.topics import TopicMap
from tests.support import FlightdProcess, copy_bundled, wait_online

TOPICS = TopicMap("sat1")
COMMANDS = 4000
LEGIT = 4


def hostile_command(i: int) -> bytes:
    """A command with a readable id that is refused (an action no flightd knows): a reply is due."""
    return json.dumps({"schema_version": 1, "command_id": f"fl-{i}", "issued_utc": time.time(),
                       "body": {"action": "no-such-action"}}).encode()


def shed_counter(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {s.labels["pipe"]: s.value for f in text_string_to_metric_families(text)
            if f.name == "orbitd_inbound_shed" for s in f.samples if s.name.endswith("_total")}


def test_a_flood_of_commands_is_shed_oldest_first_counted_and_loses_no_job(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    port = free_port()
    flightd = FlightdProcess(broker.url, tmp_path / "data", copy_bundled(tmp_path / "models", DIGITS),
                             log_level="WARNING",
                             env={"ORBITD_METRICS__ENABLED": "true", "ORBITD_METRICS__PORT": str(port)})
    flightd.start()
    probe: Probe | None = None
    try:
        asyncio.run(wait_online(broker.url))
        probe = p = Probe(broker.host, broker.port, TOPICS)
        legit = [f"flood-legit-{k}" for k in range(LEGIT)]
        for i in range(COMMANDS):
            if i % (COMMANDS // LEGIT) == 7:
                probe.publish(TOPICS.job_submit, legit_job(legit[i // (COMMANDS // LEGIT)], i))
            probe.publish(TOPICS.command, hostile_command(i))
        assert probe.flush(60.0), "the broker did not take the flood"
        assert probe.ping("after-flood", timeout_s=60.0) is not None, "no ping reply after the flood"

        def replies() -> int:
            return sum(1 for i in range(COMMANDS) if p.seen.get(TOPICS.command_reply(f"fl-{i}")))

        def shed_events() -> list[Event]:
            events = [decode(m, Event).message for m in list(p.seen[TOPICS.events]) if m]
            return [e for e in events if e.message.startswith("inbound flood")]

        def shed() -> int:
            return sum(int(e.details["shed"].get("commands", 0)) for e in shed_events())

        accounted = probe.wait_for(lambda _seen: replies() + shed() == COMMANDS, 60.0)
        assert accounted, f"{replies()} replies + {shed()} shed != {COMMANDS} commands sent"
        assert shed() > 0, "a flood of 4,000 commands shed nothing: the pipes are not bounded"
        assert probe.seen.get(TOPICS.command_reply(f"fl-{COMMANDS - 1}")), "the newest command was shed"
        reply = decode(probe.seen[TOPICS.command_reply(f"fl-{COMMANDS - 1}")][0], CommandReply).message
        assert not reply.ok and "no-such-action" in (reply.error or "")
        assert shed_counter(port).get("commands") == shed()

        for job_id in legit:
            assert probe.wait_topic(TOPICS.result(job_id), 60.0), f"job {job_id} lost in the flood"
            states = [decode(p, JobStateEvent).message.state for p in probe.seen[TOPICS.job_state(job_id)] if p]
            assert JobState.DONE in states, (job_id, states)

        log = flightd.log()
        lines = log.splitlines()
        shed_lines = [ln for ln in lines if "inbound flood: shed" in ln]
        assert 1 <= len(shed_lines) == len(shed_events()) <= 10, shed_lines
        refusals = [ln for ln in lines if " WARNING " in ln and "command fl-" in ln]
        assert len(refusals) == replies(), "one log line per command refused"
        assert tracebacks(log) == 0
        assert flightd.alive()
    finally:
        if probe is not None:
            probe.close()
        flightd.stop()
        broker.stop()
