"""End to end on the locked broker (Mosquitto, TLS, client certificates, the ACL) with a real flightd
holding signing keys: forged, unsigned, wrong-role, revoked-key, tampered and replayed requests are
refused with the reason on the wire and in flightd's log, and the daemon keeps working; a replay is
refused after a flightd restart as before it; a key is rotated without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ground.client import CommandFailed, GroundClient, GroundError, JobRejected
from ground.pki import Pki, init_pki
from ground.signer import Signer, generate_key
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode, encode, pack_tensors
from link.messages import (
    ActivateModel,
    AddKey,
    Command,
    CommandReply,
    JobRequest,
    JobState,
    JobStateEvent,
    ListKeys,
    Ping,
    RevokeKey,
    RotateKey,
    Status,
)
from link.sequence import After, JobTemplate, ListSequences, Sequence, SequenceEntry, UploadSequence
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from tests.support import FlightdProcess, copy_bundled

TOPICS = TopicMap("sat1")
IMAGE = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)


@dataclass
class Stack:
    pki: Pki
    broker: MosquittoBroker
    flightd: FlightdProcess
    ops: Signer
    lab: Signer
    stranger: Signer
    keys: Path

    def client(self, signer: Signer | None, identity: str = "ground-operator") -> GroundClient:
        return GroundClient(self.broker.ground_url, "sat1", signer=signer, tls=self.pki.ground(identity),
                            timeout_s=10.0)

    async def wait_online(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with self.client(self.ops) as ground:
            while True:
                try:
                    await ground.ping()
                    return
                except GroundError:
                    if time.monotonic() > deadline or not self.flightd.alive():
                        raise AssertionError(f"flightd did not come up:\n{self.flightd.log()[-3000:]}") from None


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    pki = init_pki(tmp_path / "pki", ["sat1"], persistence_dir=None)
    keys = tmp_path / "keys"
    ops, lab, stranger = (generate_key(keys, name) for name in ("ops", "lab", "stranger"))
    tls = pki.flightd("sat1")
    config = tmp_path / "flightd.toml"
    config.write_text(
        f'[link]\ntls_ca = "{tls.ca}"\ntls_cert = "{tls.cert}"\ntls_key = "{tls.key}"\n\n'
        f'[[security.keys]]\nname = "ops"\nrole = "operator"\npublic_key = "{ops.public_key.hex()}"\n\n'
        f'[[security.keys]]\nname = "lab"\nrole = "user"\npublic_key = "{lab.public_key.hex()}"\npriority_cap = 3\n'
    )
    broker = MosquittoBroker(tmp_path / "broker", locked=pki.broker_dir)
    broker.start()
    models = copy_bundled(tmp_path / "models", "digits-int8")
    flightd = FlightdProcess(broker.url, tmp_path / "data", models, config=config)
    flightd.start()
    s = Stack(pki, broker, flightd, ops, lab, stranger, keys)
    try:
        await s.wait_online()
        yield s
    finally:
        flightd.stop()
        broker.stop()


class Wire:
    """A raw client (ground-operator identity): publishes bytes as given, records what flightd answers."""

    def __init__(self, s: Stack) -> None:
        self.client = make_client(BrokerUrl.parse(s.broker.ground_url), identifier="wire",
                                  tls=s.pki.ground("ground-operator"))
        self.messages: list[tuple[str, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Wire:
        await self.client.__aenter__()
        await self.client.subscribe([(TOPICS.job_state_all, 1), (TOPICS.command_reply_all, 1), (TOPICS.events, 1),
                                     (TOPICS.status, 1)])
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.__aexit__(None, None, None)

    async def _read(self) -> None:
        async for message in self.client.messages:
            self.messages.append((str(message.topic), bytes(message.payload)))  # type: ignore[arg-type]

    async def send(self, topic: str, payload: bytes) -> None:
        await self.client.publish(topic, payload, qos=1)

    async def wait(self, topic: str, accept: Callable[[bytes], bool] = lambda _: True, timeout_s: float = 10.0,
                   since: int = 0) -> bytes:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for t, p in self.messages[since:]:
                if t == topic and p and accept(p):
                    return p
            await asyncio.sleep(0.02)
        raise AssertionError(f"nothing on {topic} within {timeout_s} s; got {[t for t, _ in self.messages]}")

    async def rejection(self, job_id: str) -> str:
        payload = await self.wait(TOPICS.job_state(job_id),
                                  lambda p: decode(p, JobStateEvent).message.state is JobState.REJECTED)
        return decode(payload, JobStateEvent).message.reason or ""

    async def reply(self, command_id: str) -> CommandReply:
        return decode(await self.wait(TOPICS.command_reply(command_id)), CommandReply).message


def job(job_id: str, priority: int = 2) -> bytes:
    tensors, binary = pack_tensors({"image": IMAGE})
    return encode(JobRequest(job_id=job_id, model="digits-int8", inputs=tensors, priority=priority), binary)


def command(command_id: str, body: object = None) -> bytes:
    return encode(Command(command_id=command_id, issued_utc=time.time(), body=body or Ping()))  # type: ignore[arg-type]


async def assert_in_log(s: Stack, text: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in s.flightd.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in flightd's log:\n{s.flightd.log()[-3000:]}")
        await asyncio.sleep(0.05)


async def test_refused_requests_have_their_reasons_and_the_daemon_keeps_working(stack: Stack) -> None:
    s = stack
    async with Wire(s) as wire:
        # unsigned
        await wire.send(TOPICS.job_submit, job("unsigned-1"))
        reason = await wire.rejection("unsigned-1")
        assert reason == "job is not signed and this satellite requires signed jobs"
        await assert_in_log(s, "rejected job unsigned-1")
        # forged: signed by a key the satellite does not know, and a signature that does not verify
        await wire.send(TOPICS.job_submit, s.stranger.seal(job("forged-1"), "sat1"))
        assert await wire.rejection("forged-1") == f"unknown signing key {s.stranger.fingerprint}"
        forged = bytearray(s.ops.seal(job("forged-2"), "sat1"))
        forged[-10] ^= 0xFF
        await wire.send(TOPICS.job_submit, bytes(forged))
        assert (await wire.rejection("forged-2")).startswith(f"bad signature (key {s.ops.fingerprint}")
        # tampered: one flipped bit in the tensor bytes (the end of the body, just before the signature)
        tampered = bytearray(s.ops.seal(job("tampered-1"), "sat1"))
        tampered[-64 - 5] ^= 0x01
        await wire.send(TOPICS.job_submit, bytes(tampered))
        assert "bad signature" in await wire.rejection("tampered-1")
        await assert_in_log(s, "rejected job tampered-1")
        # addressed to another satellite
        await wire.send(TOPICS.job_submit, s.ops.seal(job("elsewhere-1"), "sat2"))
        assert await wire.rejection("elsewhere-1") == "job is addressed to satellite 'sat2', this is 'sat1'"
        # wrong role: a user key asks for a model activation, and for a job above its cap
        await wire.send(TOPICS.command, s.lab.seal(command("wrong-role-1", ActivateModel(name="digits-int8",
                                                                                          version="1.0.0")), "sat1"))
        reply = await wire.reply("wrong-role-1")
        assert not reply.ok and f"key {s.lab.fingerprint} (lab, user) may not sign command activate_model" in (
            reply.error or "")
        await wire.send(TOPICS.job_submit, s.lab.seal(job("too-high-1", priority=9), "sat1"))
        assert await wire.rejection("too-high-1") == (
            f"key {s.lab.fingerprint} (lab, user) may submit jobs up to priority 3, not 9")
        await assert_in_log(s, "command wrong-role-1 refused")
        # replayed: the same signed bytes twice
        ping = s.ops.seal(command("replay-1"), "sat1")
        await wire.send(TOPICS.command, ping)
        assert (await wire.reply("replay-1")).ok
        mark = len(wire.messages)
        await wire.send(TOPICS.command, ping)
        again = decode(await wire.wait(TOPICS.command_reply("replay-1"), since=mark), CommandReply).message
        assert not again.ok and "was already accepted (replay)" in (again.error or "")
        await assert_in_log(s, "command replay-1 refused")
        # a revoked key: added, used, revoked by the operator, refused
        temp = generate_key(s.keys, "temp")
        async with s.client(s.ops) as ops:
            await ops.command(AddKey(name="temp", role="user", public_key=temp.public_key.hex()))  # type: ignore[arg-type]
            async with s.client(temp, "ground-user") as t:
                accepted = await t.submit("digits-int8", {"image": IMAGE}, priority=1)
                await t.wait_result(accepted.job_id)  # a user may acknowledge its own result
            await ops.command(RevokeKey(fingerprint=temp.fingerprint))
            listing = await ops.command(ListKeys())
        temp_entry = next(k for k in listing if k["name"] == "temp")
        assert (temp_entry["fingerprint"], temp_entry["active"]) == (temp.fingerprint, False)
        await wire.send(TOPICS.job_submit, temp.seal(job("revoked-1"), "sat1"))
        assert await wire.rejection("revoked-1") == f"key {temp.fingerprint} (temp, user) was revoked"
    # ... and through all of it the daemon kept working.
    assert s.flightd.alive()
    async with s.client(s.lab, "ground-user") as lab:
        submitted = await lab.submit("digits-int8", {"image": IMAGE}, priority=3)
        fetched = await lab.wait_result(submitted.job_id)
        assert fetched.outputs
        with pytest.raises(JobRejected, match="not signed"):
            async with s.client(None, "ground-user") as anonymous:
                await anonymous.submit("digits-int8", {"image": IMAGE}, ack_timeout_s=3)


async def test_a_replay_is_refused_after_a_restart_as_before_it(stack: Stack) -> None:
    s = stack
    ping = s.ops.seal(command("before-restart"), "sat1")
    submitted = s.ops.seal(job("job-before-restart"), "sat1")
    async with Wire(s) as wire:
        await wire.send(TOPICS.command, ping)
        assert (await wire.reply("before-restart")).ok
        await wire.send(TOPICS.job_submit, submitted)
        await wire.wait(TOPICS.job_state("job-before-restart"),
                        lambda p: decode(p, JobStateEvent).message.state is JobState.DONE, timeout_s=20)
    assert s.flightd.terminate() == 0
    s.flightd.start()
    await s.wait_online()
    async with Wire(s) as wire:
        await wire.send(TOPICS.command, ping)
        reply = await wire.reply("before-restart")
        assert not reply.ok and "was already accepted (replay)" in (reply.error or "")
        # The job's signed bytes again: a duplicate of a journaled job, answered with its state, never run twice.
        mark = len(wire.messages)
        await wire.send(TOPICS.job_submit, submitted)
        state = decode(await wire.wait(TOPICS.job_state("job-before-restart"), since=mark), JobStateEvent).message
        assert state.state is JobState.DONE
    await assert_in_log(s, "command before-restart refused")
    async with s.client(s.ops) as ops:
        record = await ops.job("job-before-restart")
        assert record["completions"] == 1
        await ops.ping()  # a new sequence number is accepted


async def test_a_key_is_rotated_without_a_restart(stack: Stack) -> None:
    s = stack
    pid = s.flightd.proc.pid if s.flightd.proc else None
    lab2 = generate_key(s.keys, "lab2")
    async with s.client(s.ops) as ops:
        changed = await ops.command(RotateKey(fingerprint=s.lab.fingerprint, public_key=lab2.public_key.hex()))
    assert [(c["fingerprint"], c["active"]) for c in changed] == [(s.lab.fingerprint, False),
                                                                  (lab2.fingerprint, True)]
    async with s.client(lab2, "ground-user") as lab:
        submitted = await lab.submit("digits-int8", {"image": IMAGE}, priority=3)
        await lab.wait_result(submitted.job_id)
        with pytest.raises(JobRejected, match="up to priority 3"):  # name, role and cap carried over
            await lab.submit("digits-int8", {"image": IMAGE}, priority=4)
    async with s.client(s.lab, "ground-user") as old:
        with pytest.raises(JobRejected, match=f"key {s.lab.fingerprint} \\(lab, user\\) was revoked"):
            await old.submit("digits-int8", {"image": IMAGE}, priority=1)
        with pytest.raises(CommandFailed, match="was revoked"):
            await old.ping()
    async with Wire(s) as wire:
        status = decode(await wire.wait(TOPICS.status, lambda p: lab2.fingerprint in
                                        decode(p, Status).message.keys), Status).message
        assert s.lab.fingerprint not in status.keys and s.ops.fingerprint in status.keys
    assert s.flightd.proc is not None and s.flightd.proc.pid == pid and s.flightd.alive()


async def test_the_satellite_keeps_its_last_operator_key(stack: Stack) -> None:
    async with stack.client(stack.ops) as ops:
        with pytest.raises(CommandFailed, match="last active operator key"):
            await ops.command(RevokeKey(fingerprint=stack.ops.fingerprint))
        await ops.ping()


async def test_sequences_are_operator_commands_and_their_jobs_run_on_a_signed_satellite(stack: Stack) -> None:
    """A sequence is an operator command: a user key's upload is refused for its role (and a user's
    broker identity may not even publish on seq/cmd). An operator's upload is armed, and the job it
    fires runs although this satellite refuses unsigned jobs: flightd asks for it onboard, under the
    sequence its signer was allowed to upload."""
    inputs = pack_tensors({"image": IMAGE}, framed=False)[0]
    sequence = Sequence(sequence_id="signed", entries=[SequenceEntry(
        name="soon", trigger=After(delay_s=0.5, of="start"), job=JobTemplate(model="digits-int8", inputs=inputs))])
    async with stack.client(stack.lab) as lab:  # the operator's broker identity, a user's key
        with pytest.raises(CommandFailed, match=r"\(lab, user\) may not sign command upload_sequence"):
            await lab.sequence_command(UploadSequence(sequence=sequence))
    async with stack.client(stack.ops) as ops:
        await ops.track_all_jobs()
        reply = await ops.sequence_command(UploadSequence(sequence=sequence))
        assert reply["state"] == "armed"
        await ops.wait_result("signed_soon_1", timeout_s=20)
        [listed] = await ops.sequence_command(ListSequences())
        assert listed["state"] == "done" and listed["handled"] == {"soon": 1}
    await assert_in_log(stack, "sequence signed entry soon #1 fired job signed_soon_1")
