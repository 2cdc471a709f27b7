"""The ground client signs what it sends (ground.client + ground.signer) over the locked broker's TLS.

A stand-in satellite (the ``flightd-sat1`` identity, no flightd) reads what arrives on sat1's uplink
topics and checks it as flightd will: every job and command is an ORS1 envelope for sat1 that
verifies under the ground key, and every publish, a retry included, carries a new sequence number.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from ground.client import CommandFailed, GroundClient, GroundError
from ground.pki import Pki
from ground.signer import Signer, generate_key
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode, encode
from link.envelope import open_envelope
from link.messages import Command, CommandReply, JobRequest
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client

TOPICS = TopicMap("sat1")


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return generate_key(tmp_path / "keys", "ops")


def satellite(broker: MosquittoBroker, pki: Pki) -> aiomqtt.Client:
    return make_client(BrokerUrl.parse(broker.url), identifier="flightd-sat1", tls=pki.flightd("sat1"))


async def test_every_job_submission_and_retry_is_sealed_anew(pki: Pki, broker: MosquittoBroker, signer: Signer) -> None:
    async with satellite(broker, pki) as sat:
        await sat.subscribe(TOPICS.job_submit, qos=1)
        async with GroundClient(broker.ground_url, "sat1", signer=signer, tls=pki.ground("ground-operator")) as g:
            with pytest.raises(GroundError, match="no acknowledgement"):
                await g.submit("digits-int8", {"image": np.zeros((1, 1, 8, 8), np.float32)}, job_id="j-1",
                               ack_timeout_s=0.3, attempts=2)
        received = []
        async with asyncio.timeout(5):
            async for message in sat.messages:
                received.append(bytes(message.payload))  # type: ignore[arg-type]
                if len(received) == 2:
                    break
    envelopes = [open_envelope(p) for p in received]
    for env in envelopes:
        assert env.sat == "sat1" and env.fingerprint == signer.fingerprint
        env.verify(signer.public_key)
        assert decode(env.body, JobRequest).message.job_id == "j-1"
    assert bytes(envelopes[0].body) == bytes(envelopes[1].body)
    assert envelopes[1].sequence == envelopes[0].sequence + 1


async def test_commands_are_sealed_without_the_legacy_tag(pki: Pki, broker: MosquittoBroker, signer: Signer) -> None:
    async with satellite(broker, pki) as sat:
        await sat.subscribe(TOPICS.command, qos=1)
        async with GroundClient(broker.ground_url, "sat1", signer=signer, key_id="old", key=bytes(32),
                                tls=pki.ground("ground-user")) as g:
            ping = asyncio.create_task(g.ping())
            async with asyncio.timeout(5):
                async for message in sat.messages:
                    env = open_envelope(bytes(message.payload))  # type: ignore[arg-type]
                    env.verify(signer.public_key)
                    command = decode(env.body, Command).message
                    assert command.auth is None and command.body.action == "ping"
                    reply = CommandReply(command_id=command.command_id, ok=False, error="test refusal")
                    await sat.publish(TOPICS.command_reply(command.command_id), encode(reply), qos=1)
                    break
            with pytest.raises(CommandFailed, match="test refusal"):
                await ping
