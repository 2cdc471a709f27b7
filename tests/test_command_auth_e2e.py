"""End to end, flightd with a command key (real process, real Mosquitto): signed commands work;
unsigned, forged, wrong-key, replayed and stale ones are refused with the reason in a CommandReply,
an Event and a log line, and the daemon keeps working."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from ground.client import CommandFailed, GroundClient
from hil.mosquitto_broker import MosquittoBroker
from link.auth import sign
from link.codec import decode, encode
from link.messages import Auth, Command, CommandReply, Event, EventKind, GetJob, Ping
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from tests.support import FlightdProcess, copy_bundled, wait_online, wait_until

KEY = bytes.fromhex("5a" * 16 + "c3" * 16)
WRONG_KEY = bytes.fromhex("11" * 32)
TOPICS = TopicMap("sat1")


@pytest.fixture
async def flightd(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[FlightdProcess]:
    models = copy_bundled(tmp_path / "models", "digits-int8")
    config = tmp_path / "flightd.toml"
    config.write_text(f'[security]\ncommand_keys = {{ ground = "{KEY.hex()}" }}\ncommand_window_s = 600\n')
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models, config=config)
    proc.start()
    try:
        await wait_online(mosquitto.url, key_id="ground", key=KEY)
        yield proc
    finally:
        proc.stop()


class Wire:
    """A raw MQTT client: publishes commands byte for byte and records replies and events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.replies: list[CommandReply] = []
        self.events: list[Event] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client = make_client(BrokerUrl.parse(url))

    async def __aenter__(self) -> Wire:
        await self._client.__aenter__()
        await self._client.subscribe([(f"{TOPICS.base}/cmd/+/reply", 1), (TOPICS.events, 1)])
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await self._client.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for m in self._client.messages:
            payload = bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b""
            if str(m.topic) == TOPICS.events:
                self.events.append(decode(payload, Event).message)
            else:
                self.replies.append(decode(payload, CommandReply).message)

    async def publish(self, payload: bytes) -> None:
        await self._client.publish(TOPICS.command, payload, qos=1)

    def replies_to(self, command_id: str) -> list[CommandReply]:
        return [r for r in self.replies if r.command_id == command_id]

    async def refusal(self, command: Command | bytes, command_id: str, n: int = 1) -> tuple[str, Event]:
        """Publish, then wait for the ``n``-th reply to ``command_id`` (a refusal) and its Event."""
        await self.publish(command if isinstance(command, bytes) else encode(command))
        await wait_until(lambda: len(self.replies_to(command_id)) >= n, 10, f"reply {n} to {command_id}")
        reply = self.replies_to(command_id)[n - 1]
        assert reply.ok is False and reply.error, reply

        def event() -> Event | None:
            return next((e for e in self.events if e.kind is EventKind.ERROR
                         and e.details.get("command_id") == command_id and e.message.endswith(reply.error or "")),
                        None)

        await wait_until(lambda: event() is not None, 10, f"event for {command_id}")
        found = event()
        assert found is not None and found.message == f"command refused: {reply.error}"
        assert found.severity == "warning"
        return reply.error or "", found


def ping(command_id: str, issued_utc: float | None = None) -> Command:
    return Command(command_id=command_id, issued_utc=time.time() if issued_utc is None else issued_utc, body=Ping())


async def test_signed_commands_work_and_bad_ones_are_refused(
    mosquitto: MosquittoBroker, flightd: FlightdProcess
) -> None:
    async with Wire(mosquitto.url) as wire:
        # a correctly signed command works (through the ground client)
        async with GroundClient(mosquitto.url, "sat1", key_id="ground", key=KEY) as ground:
            assert "pong_utc" in await ground.ping()
        # unsigned (ground client without a key)
        async with GroundClient(mosquitto.url, "sat1", timeout_s=10) as unsigned:
            with pytest.raises(CommandFailed, match="command is not signed and this satellite requires signed"):
                await unsigned.ping()

        refusals: dict[str, str] = {}
        cmd = sign(ping("forged-1"), "ground", KEY)
        assert cmd.auth is not None
        bad_mac = format(int(cmd.auth.mac, 16) ^ 1, "064x")
        refusals["forged-1"], _ = await wire.refusal(
            cmd.model_copy(update={"auth": Auth(key_id="ground", mac=bad_mac)}), "forged-1")
        refusals["wrongkey-1"], _ = await wire.refusal(sign(ping("wrongkey-1"), "ground", WRONG_KEY), "wrongkey-1")
        refusals["unknown-1"], _ = await wire.refusal(sign(ping("unknown-1"), "ops", KEY), "unknown-1")
        refusals["unsigned-1"], _ = await wire.refusal(ping("unsigned-1"), "unsigned-1")
        # tampered after signing: the body asks for another job than the one signed
        signed = sign(Command(command_id="tamper-1", issued_utc=time.time(), body=GetJob(job_id="a")), "ground", KEY)
        refusals["tamper-1"], _ = await wire.refusal(signed.model_copy(update={"body": GetJob(job_id="b")}), "tamper-1")
        # stale and from the future, validly signed
        refusals["stale-1"], _ = await wire.refusal(sign(ping("stale-1", time.time() - 700), "ground", KEY), "stale-1")
        refusals["future-1"], _ = await wire.refusal(sign(ping("future-1", time.time() + 700), "ground", KEY),
                                                     "future-1")

        # replay: the very same bytes twice; the first is carried out, the second refused
        recorded = encode(sign(ping("replay-1"), "ground", KEY))
        await wire.publish(recorded)
        await wait_until(lambda: len(wire.replies_to("replay-1")) >= 1, 10, "first reply")
        assert wire.replies_to("replay-1")[0].ok is True
        refusals["replay-1"], _ = await wire.refusal(recorded, "replay-1", n=2)

        assert refusals["forged-1"] == "bad command signature"
        assert refusals["wrongkey-1"] == "bad command signature"
        assert refusals["tamper-1"] == "bad command signature"
        assert refusals["unknown-1"] == "unknown key_id 'ops'"
        assert refusals["unsigned-1"].startswith("command is not signed")
        assert "outside the 600 s window" in refusals["stale-1"]
        assert "outside the 600 s window" in refusals["future-1"]
        assert "replay" in refusals["replay-1"]

        # the daemon is alive and keeps working: a job runs, a signed command is answered
        assert flightd.alive()
        x = np.zeros((1, 1, 8, 8), np.float32)
        async with GroundClient(mosquitto.url, "sat1", key_id="ground", key=KEY) as ground:
            job = await ground.submit("digits-int8", {"image": x})
            fetched = await ground.wait_result(job.job_id, timeout_s=30)  # acks with a signed command
            assert fetched.outputs["logits"].shape == (1, 10)
            assert (await ground.job(job.job_id))["completions"] == 1

    log = flightd.log()
    for command_id, reason in refusals.items():
        assert f"command {command_id} refused: {reason}" in log, command_id
    assert "commands are accepted unsigned" not in log
