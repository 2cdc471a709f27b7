"""Messages waiting in the bridge: what one broker has seen on a bridged QoS 1 tree and the other has not.

Mosquitto reports no per-client queue length (its ``$SYS`` store count mixes in retained messages, and
a retained message queued for the bridge is one stored object), so the rig counts from both ends:
an observer subscribed to the bridged trees on the ground broker and one on the onboard broker (over
the board's own network, not through the link) report what they see, and a message is identified by
its topic and payload digest. Uplink: seen on the ground broker on a ground -> satellite tree, not
(yet) onboard; downlink: seen onboard on a satellite -> ground QoS 1 tree, not (yet) on the ground.
Telemetry (QoS 0) is never queued by the bridge and is not counted. Pure: messages in, counts out.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from aiomqtt import Topic

from hil.link.bridge import BridgeTopic, bridge_topics
from hil.link.model import Direction
from link.topics import TopicMap

Side = Literal["ground", "board"]


class BridgeBacklog:
    """Distinct (topic, payload digest) pairs seen per side on the QoS 1 trees of ``topics``' bridge."""

    def __init__(self, topics: TopicMap) -> None:
        self.trees: tuple[BridgeTopic, ...] = tuple(t for t in bridge_topics(topics) if t.qos > 0)
        self._seen: dict[Side, set[tuple[str, bytes]]] = {"ground": set(), "board": set()}

    @property
    def filters(self) -> list[tuple[str, int]]:
        """What an observer subscribes to (on either broker)."""
        return [(t.pattern, 1) for t in self.trees]

    def direction_of(self, topic: str) -> Direction | None:
        """UP for a ground -> satellite tree, DOWN for a satellite -> ground one, None otherwise."""
        for t in self.trees:
            if Topic(topic).matches(t.pattern):
                return Direction.UP if t.direction == "in" else Direction.DOWN
        return None

    def seen(self, side: Side, topic: str, payload: bytes) -> None:
        if self.direction_of(topic) is not None:
            self._seen[side].add((topic, hashlib.sha256(payload).digest()))

    def waiting(self) -> dict[Direction, int]:
        """Messages published on one side and not seen on the other, per direction."""
        up = {m for m in self._seen["ground"] - self._seen["board"] if self.direction_of(m[0]) is Direction.UP}
        down = {m for m in self._seen["board"] - self._seen["ground"] if self.direction_of(m[0]) is Direction.DOWN}
        return {Direction.UP: len(up), Direction.DOWN: len(down)}

    def carried(self) -> dict[Direction, int]:
        """Messages seen on both sides, per direction."""
        both = self._seen["ground"] & self._seen["board"]
        up = sum(1 for m in both if self.direction_of(m[0]) is Direction.UP)
        return {Direction.UP: up, Direction.DOWN: len(both) - up}
