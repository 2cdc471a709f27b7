"""The link emulator: a user-space TCP relay between the two sides of the space link.

The onboard broker's bridge (or any client) connects to the relay; the relay connects on to the target
(the ground broker) and forwards both directions, applying the contact plan and the link model in the
link's clock (:mod:`hil.link.clock`, mission time under warp):

* One-way delay (the plan's): bytes read at t reach the far side at t + delay, in order.
* Rate per direction: a token bucket (:class:`hil.link.model.TokenBucket`) in mission time. Not ``tc
  tbf``: tbf shapes an interface in wall time (it cannot follow a warped clock), would shape every user
  of the interface (on loopback, every test on the machine), and needs the namespace runner; the
  relay's bucket works the same on loopback, in a namespace and towards a real board, and counts the
  bytes of each pass. It meters TCP payload (MQTT bytes), not IP/TCP headers.
* Loss bursts: bytes sent in a burst reach the far side when TCP's retransmission gets through
  (:func:`hil.link.model.arrival_s`); if TCP would give up, the connection is cut.
* Outages follow the contact plan: at loss of signal every connection is reset (RST both ways) and
  bytes still in flight on the link are dropped; bytes whose arrival would fall after the loss of
  signal are dropped as they are read. A connection opened out of contact is either reset at once
  (``out_of_contact="reset"``: the client sees ECONNRESET, as good as refused) or held
  (``"hold"``): accepted locally, as a satellite terminal's performance-enhancing proxy terminates
  TCP on its own side, its bytes kept, and relayed from the next acquisition on (the client sees a
  server that is slow to answer, and gives up by its own timeout). Held, Mosquitto's bridge makes one
  connection attempt per keepalive instead of one per ``restart_timeout``, and each attempt queues
  every retained message of its "out" topics again (Mosquitto 2.0.11, eclipse-mosquitto/mosquitto
  issue 2248): reset, a 5 h gap at warp 200 re-sent every retained job state ~55 times at the next
  pass; held, once or twice, and the bridge is up at the acquisition itself.

The relay terminates TCP on both sides (a split-connection proxy, like a satellite link's Performance
Enhancing Proxy, RFC 3135): an endpoint's kernel acknowledges bytes the relay later drops at a cut, so
delivery guarantees come from MQTT (QoS 1 with a persistent session), not from TCP. docs/hil.md
explains what loss means for MQTT here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from hil.link.clock import LinkClock
from hil.link.contact import ContactPlan
from hil.link.model import Direction, LinkParams, TokenBucket, arrival_s
from link.transport import NODELAY

log = logging.getLogger("hil.link.relay")

READ_BYTES = 64 * 1024
SEGMENT_BYTES = 4096
"""Bytes are timed in pieces of at most this size (a read is split), so a slow link delivers a large
message progressively rather than all at once."""


@dataclass(frozen=True)
class LinkEvent:
    """Something the relay did, at mission time ``t_s``: kind is "accepted", "refused", "held" (opened
    out of contact, kept for the next acquisition), "gave_up" (a held client closed), "cut_los",
    "cut_loss", "closed" (an end closed its connection, or the relay stopped), "failed" (an end reset
    its connection) or "target_unreachable"."""

    t_s: float
    kind: str
    connection: int


@dataclass
class LinkStats:
    """Counters of a relay: bytes delivered per direction, in total and per contact (index into the
    plan's ``contacts``), and the events in order."""

    bytes: dict[Direction, int] = field(default_factory=lambda: {Direction.UP: 0, Direction.DOWN: 0})
    contact_bytes: dict[int, dict[Direction, int]] = field(default_factory=dict)
    events: list[LinkEvent] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees ECONNRESET, as when a link drops under it."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(*NODELAY)


class _Pipe:
    """One direction of one connection: read, time, hold, deliver."""

    def __init__(
        self,
        session: _Session,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.session = session
        self.relay = session.relay
        self.direction = direction
        self.reader = reader
        self.writer = writer
        self.bucket = TokenBucket(self.relay.params.rate(direction), self.relay.params.bucket_depth_bytes)
        self.initial = b""
        """Bytes read before the session started (a held connection's), relayed first."""
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued_bytes = 0
        self.last_arrival = -float("inf")
        self.data_ready = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()

    async def read_side(self) -> None:
        relay = self.relay
        delay = relay.plan.one_way_delay_s
        while True:
            data, self.initial = (self.initial, b"") if self.initial else (await self.reader.read(READ_BYTES), b"")
            now = relay.clock.now()
            if not data:
                self.queue.append((max(now + delay, self.last_arrival), b""))
                self.data_ready.set()
                return
            for i in range(0, len(data), SEGMENT_BYTES):
                piece = data[i : i + SEGMENT_BYTES]
                sent = self.bucket.reserve(len(piece), now)
                got = arrival_s(sent, delay, relay.params.loss, relay.params.tcp, self.last_arrival)
                if not got.delivered:  # TCP on the link gives up at got.t_s: the connection dies then
                    await relay.clock.sleep_until(got.t_s)
                    self.session.cut("cut_loss")
                    return
                arrival = got.t_s
                if arrival >= self.session.contact_end_s:
                    continue  # would reach the far side after loss of signal: lost with the link
                self.last_arrival = arrival
                self.queue.append((arrival, piece))
                self.queued_bytes += len(piece)
            self.data_ready.set()
            if self.queued_bytes > relay.buffer_bytes:
                self.space.clear()
                await self.space.wait()

    async def write_side(self) -> None:
        relay = self.relay
        while True:
            await self.data_ready.wait()
            if not self.queue:
                self.data_ready.clear()
                continue
            await relay.clock.sleep_until(self.queue[0][0])
            now = relay.clock.now()
            chunks: list[bytes] = []
            eof = False
            while self.queue and self.queue[0][0] <= now:
                _, piece = self.queue.popleft()
                if not piece:
                    eof = True
                    break
                chunks.append(piece)
            delivered = sum(len(c) for c in chunks)
            if delivered:
                self.writer.write(b"".join(chunks))
                self.queued_bytes -= delivered
                relay.count_bytes(self.direction, delivered, now)
                if self.queued_bytes <= relay.buffer_bytes:
                    self.space.set()
                await self.writer.drain()
            if eof:  # the sender closed its side: pass the FIN on (half-close), the other way may go on
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return


class _Session:
    """A relayed connection: two pipes; cut by the relay at loss of signal or when TCP gives up."""

    def __init__(
        self,
        relay: LinkRelay,
        number: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        contact_end_s: float,
        held: bytes = b"",
    ) -> None:
        self.relay = relay
        self.number = number
        self.contact_end_s = contact_end_s
        self.client_writer = client[1]
        self.server_writer = server[1]
        c2s, s2c = relay.directions
        self.pipes = (_Pipe(self, c2s, client[0], server[1]), _Pipe(self, s2c, server[0], client[1]))
        self.pipes[0].initial = held
        self.tasks: list[asyncio.Task[None]] = []
        self.done = False

    async def run(self) -> None:
        """Relay until both directions have delivered their end of stream (then close), a side fails
        (then reset both) or the relay cuts the connection."""
        self.tasks = [asyncio.create_task(f()) for p in self.pipes for f in (p.read_side, p.write_side)]
        writers = {self.tasks[1], self.tasks[3]}
        finished = 0
        pending: set[asyncio.Task[None]] = set(self.tasks)
        try:
            while pending and not self.done:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if self.done or t.cancelled():
                        continue
                    exc = t.exception()
                    if exc is not None:
                        log.info("connection %d failed: %r", self.number, exc)
                        self.relay.event("failed", self.number)
                        self._close(reset=True)
                    elif t in writers:
                        finished += 1
                        if finished == len(writers):
                            self.relay.event("closed", self.number)
                            self._close(reset=False)
        finally:
            for t in self.tasks:
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.relay.sessions.discard(self)

    def cut(self, kind: str) -> None:
        """Reset both sides now and drop what is in flight."""
        if self.done:
            return
        self.relay.event(kind, self.number)
        self._close(reset=True)
        for t in self.tasks:
            t.cancel()

    def _close(self, reset: bool) -> None:
        self.done = True
        for w in (self.client_writer, self.server_writer):
            if reset:
                _reset(w)
            else:
                w.close()


class LinkRelay:
    """``async with LinkRelay(target, plan, clock) as relay:`` listens on ``relay.port`` and relays to
    ``target`` (host, port) under ``plan`` and ``params``. ``out_of_contact``: "reset" or "hold" a
    connection opened out of contact (see the module docstring).

    ``client_side`` says which end connects to the relay: "sat" (the onboard broker's bridge; the
    client -> target direction is the downlink) or "ground". ``buffer_bytes`` bounds what the relay
    holds per direction before it stops reading (the sender's TCP then blocks, as on a full link).
    """

    def __init__(
        self,
        target: tuple[str, int],
        plan: ContactPlan,
        clock: LinkClock,
        params: LinkParams | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        client_side: Literal["sat", "ground"] = "sat",
        buffer_bytes: int = 256 * 1024,
        out_of_contact: Literal["reset", "hold"] = "reset",
    ) -> None:
        self.target = target
        self.plan = plan
        self.clock = clock
        self.params = params or LinkParams()
        self.listen = listen
        self.directions = (Direction.DOWN, Direction.UP) if client_side == "sat" else (Direction.UP, Direction.DOWN)
        self.buffer_bytes = buffer_bytes
        self.out_of_contact = out_of_contact
        self.stats = LinkStats()
        self.sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None
        self._watch: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._holding: set[asyncio.Task[object]] = set()
        self._numbers = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("relay not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen[0], self.port)

    def event(self, kind: str, connection: int) -> None:
        e = LinkEvent(self.clock.now(), kind, connection)
        self.stats.events.append(e)
        log.info("link t=%.3f s: %s (connection %d)", e.t_s, kind, connection)

    def count_bytes(self, direction: Direction, n: int, t_s: float) -> None:
        self.stats.bytes[direction] += n
        i = self.plan.contact_index(t_s)
        if i is not None:
            per = self.stats.contact_bytes.setdefault(i, {Direction.UP: 0, Direction.DOWN: 0})
            per[direction] += n

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen[0], self.listen[1])
        self._watch = asyncio.create_task(self._follow_plan())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for s in list(self.sessions):
            s.cut("closed")
        for task in list(self._holding):  # held for an acquisition that will not come now
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _follow_plan(self) -> None:
        """Cut every connection at the loss of signal of the contact it was opened in."""
        while True:
            change = self.plan.next_change(self.clock.now())
            if change is None:
                return
            await self.clock.sleep_until(change)
            now = self.clock.now()
            for s in list(self.sessions):
                if s.contact_end_s <= now:
                    s.cut("cut_los")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _hold(self, reader: asyncio.StreamReader, aos_s: float) -> bytes | None:
        """Keep a connection opened out of contact until ``aos_s``: the bytes it sent meanwhile (up to
        ``buffer_bytes``; then it is no longer read), or None when the client closed it first."""
        chunks: list[bytes] = []
        held = 0
        wake = asyncio.create_task(self.clock.sleep_until(aos_s))
        try:
            while True:
                if held >= self.buffer_bytes:
                    await wake
                    return b"".join(chunks)
                read = asyncio.create_task(reader.read(READ_BYTES))
                await asyncio.wait({wake, read}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    await asyncio.gather(read, return_exceptions=True)
                if read.done() and not read.cancelled():
                    data = read.result()
                    if not data:
                        return None
                    chunks.append(data)
                    held += len(data)
                if wake.done():
                    return b"".join(chunks)
        finally:
            wake.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._numbers += 1
        number = self._numbers
        contact = self.plan.contact_index(self.clock.now())
        held = b""
        if contact is None:
            aos = self.plan.next_change(self.clock.now())
            if self.out_of_contact == "reset" or aos is None:
                self.event("refused", number)
                _reset(writer)
                return
            self.event("held", number)
            me = asyncio.current_task()
            if me is not None:
                self._holding.add(me)
            try:
                kept = await self._hold(reader, aos)
            except (ConnectionError, OSError):
                kept = None
            finally:
                self._holding.discard(me)
            contact = self.plan.contact_index(self.clock.now())
            if kept is None or contact is None:
                self.event("gave_up" if kept is None else "refused", number)
                _reset(writer)
                return
            held = kept
        try:
            server = await asyncio.open_connection(*self.target)
        except OSError as exc:
            log.warning("link: target %s:%d unreachable: %s", *self.target, exc)
            self.event("target_unreachable", number)
            _reset(writer)
            return
        for w in (writer, server[1]):
            _nodelay(w)
        if not self.plan.in_contact(self.clock.now()):  # the contact ended while connecting
            self.event("cut_los", number)
            _reset(writer)
            _reset(server[1])
            return
        session = _Session(self, number, (reader, writer), server, self.plan.contacts[contact][1], held)
        self.sessions.add(session)
        self.event("accepted", number)
        await session.run()
