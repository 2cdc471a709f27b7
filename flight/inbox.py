"""Inbound pipes (pure): received messages waiting for their handler, bounded per kind, served in order.

What arrives on the uplink faster than flightd handles it waits here, one pipe per kind of message,
instead of in the broker's queue for flightd's session: there it would wait in arrival order, and a
ping sent after a flood of 10,000 hostile messages would be answered only after all of them (3.7 s
in ``python -m bench.fuzz --batch 0`` before these pipes). Here each
pipe has a depth (messages) and a byte budget; when a message arrives at a full pipe the *oldest*
one waiting in it is dropped ("shed") and counted, so the newest messages (the operator's latest
command, the latest telemetry) are the ones kept, the memory held is bounded, and the wait behind a
flood is bounded by the depths, not by the flood. :meth:`Inbox.take` serves what is kept in arrival
order across the pipes, so a ping still tells the ground that what it sent before has been handled,
and a flood on one kind cannot starve another (each pipe keeps its own newest messages).

This is the cFS Software Bus's pipe: a depth per pipe, a message that does not fit is dropped and
counted, and an event says so (filtered: flightd reports the counts at most once a second,
:meth:`Inbox.take_shed`). Job submissions and model upload messages never come here: flightd
acknowledges one to the broker only once it is journaled or written (flight/daemon.py), so the broker
paces them and none is shed. The senders of what can be shed recover: a command without a reply
times out on the ground naming it (``GroundClient.command``: "no reply ... within N s"; send it
again), flightd's own status comes back with the next heartbeat, and a telemetry sample is
superseded by the next.

No clock, no MQTT, no I/O here: items are opaque, their sizes given by the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Pipe:
    """One pipe's definition: its ``name`` (a kind of message), ``depth`` (messages, > 0) and
    ``max_bytes`` (payload bytes waiting, > 0)."""

    name: str
    depth: int
    max_bytes: int

    def __post_init__(self) -> None:
        if self.depth <= 0 or self.max_bytes <= 0:
            raise ValueError(f"pipe {self.name!r}: depth and max_bytes must be positive, "
                             f"not {self.depth} and {self.max_bytes}")


class Inbox(Generic[T]):
    """Bounded pipes of waiting items, served in the order they were put (across the pipes).

    :meth:`put` adds an item (``size`` bytes) to a pipe, dropping the pipe's oldest items while it
    holds more than ``depth`` items or ``max_bytes`` bytes (an item larger than ``max_bytes`` on its
    own is kept alone: it was accepted by the broker's size limit). :meth:`take` returns the next
    item to handle. ``shed`` counts what was dropped, per pipe, since the last :meth:`take_shed`.
    Raises KeyError for a pipe name not defined, ValueError for two pipes of one name.
    """

    def __init__(self, pipes: Sequence[Pipe]) -> None:
        names = [p.name for p in pipes]
        if len(set(names)) != len(names):
            raise ValueError(f"pipe names must be unique: {names}")
        self.pipes = {p.name: p for p in pipes}
        self._waiting: dict[str, deque[tuple[int, T, int]]] = {name: deque() for name in self.pipes}
        self._put = 0  # items put so far: an item's number orders the pipes' heads
        self._bytes = dict.fromkeys(self.pipes, 0)
        self.shed = dict.fromkeys(self.pipes, 0)

    def __len__(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def waiting(self, name: str) -> int:
        """Items waiting in pipe ``name``."""
        return len(self._waiting[name])

    def put(self, name: str, item: T, size: int) -> int:
        """Add ``item`` (``size`` bytes) to pipe ``name``; how many older items were shed for it."""
        pipe, queue = self.pipes[name], self._waiting[name]
        queue.append((self._put, item, size))
        self._put += 1
        self._bytes[name] += size
        dropped = 0
        while len(queue) > 1 and (len(queue) > pipe.depth or self._bytes[name] > pipe.max_bytes):
            _, _, gone = queue.popleft()
            self._bytes[name] -= gone
            dropped += 1
        self.shed[name] += dropped
        return dropped

    def take(self) -> tuple[str, T] | None:
        """The item put first of those waiting, and its pipe's name; None when nothing waits."""
        heads = [(queue[0][0], name) for name, queue in self._waiting.items() if queue]
        if not heads:
            return None
        _, name = min(heads)
        _, item, size = self._waiting[name].popleft()
        self._bytes[name] -= size
        return name, item

    def take_shed(self) -> dict[str, int]:
        """The pipes that shed items since the last call, with how many; the counts start again."""
        out = {name: n for name, n in self.shed.items() if n}
        for name in out:
            self.shed[name] = 0
        return out


COMMANDS, SEQUENCE_COMMANDS, TELEMETRY, STATUS = "commands", "sequence commands", "telemetry", "status"

UPLINK_PIPES = (
    Pipe(COMMANDS, depth=64, max_bytes=4 << 20),
    Pipe(SEQUENCE_COMMANDS, depth=64, max_bytes=4 << 20),
    Pipe(TELEMETRY, depth=64, max_bytes=4 << 20),
    Pipe(STATUS, depth=64, max_bytes=4 << 20),
)
"""flightd's pipes, 64 messages and 4 MiB each. Commands and sequence commands: an operator sends a
few at a time. Telemetry: a few channels at 1 Hz; the newest are kept. Status: flightd's own status
coming back, read for a rival's (a rival's is retained and said again each heartbeat). A paced burst
of 100 hostile messages of all kinds (bench.fuzz's default) sheds nothing. 256 messages and 16 MiB in
all: a new command waits behind at most that many, ~0.1-0.2 ms of handling each."""
