"""One flightd per satellite id: who may hold the MQTT session ``flightd-<sat>``.

MQTT gives a client id one connection: when a second client connects with the same id, the broker
closes the first one's connection and hands it the persistent session. Two flightd started with the
same ``--sat`` therefore took the session from each other for ever (about 180 takeovers in 20 s on
the development machine), each receiving part of the jobs, and the retained status showed nothing.

Each flightd is an :class:`Instance` (a random ``instance_id``, the board's ``boot_id``, its
``started_utc``), which its retained status carries, offline status and last will included. Before
it connects under the shared client id, at start and before every reconnection, flightd reads the
retained status with a client of its own (:func:`read_status`: a clean session under a random id,
which neither takes the session nor receives a queued job); while connected it watches its own
status topic too. :func:`rival` decides on what it reads (pure): another instance online and heard
from within three of its heartbeats is a rival, and of two the younger yields (the later
``started_utc``; the instance id breaks a tie; a status that does not say who published it, from
a flightd older than this rule, is yielded to, since it will never yield itself). The instance that
yields stops at once: an ``error`` event (through a client of its own), an ERROR log line, no offline
status (the status is the rival's), and exit status :data:`EXIT_SESSION_CONFLICT`.

A rival that died without its last will reaching the broker looks alive until its last heartbeat is
three periods old: a flightd refused for it starts when started again after that (systemd's
``Restart=on-failure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from link.codec import WireError, decode
from link.messages import Status
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client

EXIT_SESSION_CONFLICT = 3
"""flightd's exit status when it stops because another instance serves its satellite id."""
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
"""Linux: a random id of the current boot (the same for every process until the next reboot)."""
FRESH_HEARTBEATS = 3.0
"""A status is a live instance's when it is at most this many of its heartbeat periods old."""


def boot_id(path: Path = BOOT_ID_PATH) -> str | None:
    """The board's boot id, None where the system has none (not Linux)."""
    try:
        return path.read_text().strip()[:64] or None
    except OSError:
        return None


@dataclass(frozen=True)
class Instance:
    """One flightd process: ``instance_id`` (random), ``boot_id`` (the board's boot) and ``started_utc``
    (POSIX s)."""

    instance_id: str
    boot_id: str | None
    started_utc: float

    @classmethod
    def new(cls, started_utc: float) -> Instance:
        return cls(uuid.uuid4().hex, boot_id(), started_utc)

    def describe(self) -> str:
        return f"instance {self.instance_id} (boot {self.boot_id or 'unknown'}, started {self.started_utc:.3f})"


def rival(own: Instance, seen: Status, now_utc: float, heartbeat_s: float) -> str | None:
    """Why ``own`` must yield its satellite id to the flightd that published ``seen`` (a status on
    its own status topic), or None when it need not.

    ``seen`` is a rival's when it says ``online``, names another instance (or none: an older
    flightd) and is fresh: its ``at_utc`` at most :data:`FRESH_HEARTBEATS` of its heartbeat periods
    (``heartbeat_s``, ours when it gives none) before ``now_utc``. ``own`` yields to an older rival
    (earlier ``started_utc``, then smaller instance id) and to one that does not say who it is.
    """
    if seen.state != "online" or seen.instance_id == own.instance_id:
        return None
    period = seen.heartbeat_s or heartbeat_s
    if seen.at_utc is None or now_utc - seen.at_utc > FRESH_HEARTBEATS * period:
        return None
    who = (f"instance {seen.instance_id} (boot {seen.boot_id or 'unknown'}, started {seen.started_utc:.3f})"
           if seen.instance_id is not None and seen.started_utc is not None else "a flightd that does not say which")
    if seen.instance_id is not None and seen.started_utc is not None and (seen.started_utc, seen.instance_id) > (
        own.started_utc, own.instance_id
    ):
        return None  # the rival is the younger one: it yields
    age = now_utc - seen.at_utc
    return (f"another flightd serves satellite {seen.sat} on this broker: {who}, online {age:.1f} s ago; "
            f"this is {own.describe()}: two flightd with one client id would take its session from each other")


async def read_status(url: BrokerUrl, topics: TopicMap, timeout_s: float = 5.0) -> Status | None:
    """The retained status on ``topics.status``, read with a clean session under a random client id;
    None when there is none (or it does not decode). Raises ``aiomqtt.MqttError`` when the broker
    cannot be reached.

    The end of the retained messages is found with an echo: the client publishes to its own probe
    topic after subscribing, and the broker sends retained messages on subscription, before it
    handles that publish."""
    probe = uuid.uuid4().hex
    echo = topics.probe(probe)
    async with make_client(url, identifier=f"flightd-probe-{probe}", timeout_s=timeout_s) as client:
        await client.subscribe([(topics.status, 1), (echo, 1)])
        await client.publish(echo, b"", qos=1)
        found: Status | None = None

        async def until_echo() -> None:
            nonlocal found
            async for message in client.messages:
                if message.topic.matches(echo):
                    return
                payload = message.payload
                if isinstance(payload, bytes | bytearray) and payload:
                    with contextlib.suppress(WireError):
                        found = decode(bytes(payload), Status).message

        with contextlib.suppress(asyncio.TimeoutError):  # asyncio.TimeoutError: the builtin only from 3.11
            await asyncio.wait_for(until_echo(), timeout_s)
        return found


async def announce(url: BrokerUrl, topic: str, payload: bytes, timeout_s: float = 5.0) -> None:
    """Publish one QoS 1 message with a client of its own (clean session, random id): how a flightd
    that yields says so without touching the session it yields."""
    async with make_client(url, identifier=f"flightd-yield-{uuid.uuid4().hex}", timeout_s=timeout_s) as client:
        await client.publish(topic, payload, qos=1, timeout=timeout_s)
