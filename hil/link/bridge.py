"""The onboard broker's bridge to the ground broker: Mosquitto 2.0 bridge configuration, generated.

Pure: a :class:`~link.topics.TopicMap` and an address in, config lines out. The bridge lives on the
onboard broker (flightd only ever talks to its local broker) and connects out through the link:

* ground -> satellite trees ("in": the bridge subscribes on the ground broker): job submissions,
  commands, sequence commands, model uploads — QoS 1.
* satellite -> ground trees ("out"): job states, results, command replies, upload progress, status,
  events — QoS 1; telemetry — QoS 0 (TopicMap: fresh data beats stale retransmissions; what is
  published while the bridge is down is not queued, and the ground archive shows the gap). While a
  connection attempt is pending (a link proxy holding it until the acquisition, see
  :mod:`hil.link.relay`), Mosquitto does keep QoS 0 messages for it, in memory, and sends them once
  connected: the telemetry of the attempt's last keepalive of wall time comes down late.

``cleansession false`` with a fixed ``remote_clientid``: the ground broker keeps the bridge's
subscriptions and queues QoS 1 messages for it across loss of signal; the onboard broker keeps the
bridge's outgoing queue (``local_cleansession false``). Persistence of those queues across a broker
restart is the broker's ``persistence`` option (:class:`hil.mosquitto_broker.MosquittoBroker`
``persistent=True``). QoS 1 is at least once: a message whose PUBACK is lost at a cut is sent again at
the next contact, so receivers deduplicate (job ids).

Options checked against the mosquitto.conf(5) page of Mosquitto 2.0.11 ("Configuring Bridges"):
``restart_timeout`` (wall-clock seconds, so under warp a bridge reconnects up to ``restart_timeout *
warp`` mission seconds after acquisition). Its one-value "constant" form does not work in 2.0.11: the
parser leaves the default jittered backoff (base 5 s, cap 30 s) in place (later releases reset it), and
a bridge cut at LOS came back 5-6 s of wall time later; a constant is therefore written as base = cap.
Also
``keepalive_interval`` (>= 5 s), ``bridge_protocol_version``, ``try_private``, ``notifications``
(retained ``$SYS/broker/connection/<remote_clientid>/state``: 1 connected, 0 lost, published by the
bridge's will on the ground broker).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from link.topics import TopicMap

_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class BridgeTopic:
    """One ``topic`` line: a pattern, its direction seen from the onboard broker and its QoS."""

    pattern: str
    direction: Literal["in", "out"]
    qos: int

    def line(self) -> str:
        return f"topic {self.pattern} {self.direction} {self.qos}"


def bridge_topics(topics: TopicMap) -> tuple[BridgeTopic, ...]:
    """The ground -> satellite ("in") and satellite -> ground ("out") trees of one satellite."""
    up = (topics.job_submit, topics.command, topics.sequence_command, topics.upload_all)
    down = (
        topics.job_state_all,
        topics.result_all,
        topics.command_reply_all,
        topics.upload_progress_all,
        topics.status,
        topics.events,
    )
    return (
        *(BridgeTopic(p, "in", 1) for p in up),
        *(BridgeTopic(p, "out", 1) for p in down),
        BridgeTopic(topics.telemetry_all, "out", 0),
    )


def bridge_name(topics: TopicMap) -> str:
    """The bridge connection's default name, also its client id on both brokers: ``orbitd-<sat>``."""
    return f"orbitd-{topics.sat}"


def connection_state_topic(remote_clientid: str) -> str:
    """Where Mosquitto publishes the bridge's state (retained "1" / "0") on both brokers."""
    return f"$SYS/broker/connection/{remote_clientid}/state"


def bridge_config(
    topics: TopicMap,
    address: tuple[str, int],
    *,
    name: str | None = None,
    keepalive_s: int = 20,
    restart_timeout_s: int | tuple[int, int] = 1,
    protocol: Literal["mqttv311", "mqttv50"] = "mqttv311",
) -> list[str]:
    """Config lines for the onboard broker: one bridge connection named ``name`` (default
    ``orbitd-<sat>``, also the remote client id) to ``address`` (host, port: the link relay, or the
    ground broker itself).

    Raises ValueError for a keepalive below Mosquitto's 5 s minimum, a non-positive restart timeout or a
    name Mosquitto would not take as a client id.
    """
    name = name or bridge_name(topics)
    if not _CLIENT_ID.match(name):
        raise ValueError(f"bridge name {name!r} must match {_CLIENT_ID.pattern}")
    if keepalive_s < 5:
        raise ValueError(f"keepalive {keepalive_s} s: Mosquitto's minimum is 5 s")
    timeouts = restart_timeout_s if isinstance(restart_timeout_s, tuple) else (restart_timeout_s, restart_timeout_s)
    if any(t <= 0 for t in timeouts) or timeouts[0] > timeouts[1]:
        raise ValueError(f"restart timeout {restart_timeout_s}: positive seconds (base <= cap)")
    host, port = address
    return [
        f"connection {name}",
        f"address {host}:{port}",
        f"remote_clientid {name}",
        f"local_clientid {name}.local",
        "cleansession false",
        "local_cleansession false",
        f"bridge_protocol_version {protocol}",
        "try_private true",
        "notifications true",
        f"keepalive_interval {keepalive_s}",
        f"restart_timeout {timeouts[0]} {timeouts[1]}",
        "start_type automatic",
        *(t.line() for t in bridge_topics(topics)),
    ]
