"""The floor under flightd's dispatch latency on this machine: what any durable request/reply costs.

A bare QoS 1 request/reply round trip through the same broker, with the same request and reply sizes
as a bench.dispatch job, and the same MQTT stack as flightd and the ground client (aiomqtt over paho,
TCP_NODELAY, MQTT 3.1.1): the requester publishes the request and waits for the reply; the responder,
a process of its own like flightd, on receipt writes and fsyncs 4 KiB twice in the journal's directory
(flightd's two durable commits per job: intake and completion) and publishes the reply. No decoding,
no journal, no scheduling: the difference between bench.dispatch and this floor is orbitd's.

``python -m bench.floor --serve URL DIR REQUEST_TOPIC REPLY_TOPIC REPLY_BYTES`` is the responder;
:class:`FloorProbe` starts it and times round trips from inside a running bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from link.transport import BrokerUrl, make_client

FSYNC_BYTES = 4096
"""Bytes written before each fsync: a page, as a small SQLite WAL commit writes (issue 14's 0.28 ms)."""


def durable_write(fd: int, block: bytes) -> None:
    """Write ``block`` at the start of ``fd`` and fsync it (a commit's cost on this file system)."""
    os.pwrite(fd, block, 0)
    os.fsync(fd)


def fsync_ms(directory: Path, n: int = 200) -> list[float]:
    """``n`` timed :func:`durable_write` calls (ms) on a file in ``directory``."""
    path = directory / "floor-fsync.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    block = os.urandom(FSYNC_BYTES)
    try:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            durable_write(fd, block)
            out.append((time.perf_counter() - t0) * 1e3)
        return out
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


async def serve(url: str, directory: Path, request_topic: str, reply_topic: str, reply_bytes: int) -> None:
    """The responder: each request is answered by ``reply_bytes`` bytes after two durable writes."""
    reply = os.urandom(reply_bytes)
    fd = os.open(directory / "floor-responder.bin", os.O_RDWR | os.O_CREAT, 0o600)
    block = os.urandom(FSYNC_BYTES)
    async with make_client(BrokerUrl.parse(url), identifier=f"floor-responder-{os.getpid()}") as client:
        await client.subscribe(request_topic, qos=1)
        print("ready", flush=True)
        async for _message in client.messages:
            durable_write(fd, block)  # the intake commit
            durable_write(fd, block)  # the completion commit
            await client.publish(reply_topic, reply, qos=1)


class FloorProbe:
    """A responder process and a requester client on ``url``: ``await probe.round_trip_ms()``."""

    def __init__(self, url: str, directory: Path, request_bytes: int, reply_bytes: int) -> None:
        self.url, self.directory = url, directory
        self.request = os.urandom(request_bytes)
        self.reply_bytes = reply_bytes
        tag = f"{os.getpid()}"
        self.request_topic, self.reply_topic = f"floor/{tag}/request", f"floor/{tag}/reply"
        self._proc: subprocess.Popen[bytes] | None = None
        self._client = make_client(BrokerUrl.parse(url), identifier=f"floor-requester-{tag}")

    async def __aenter__(self) -> FloorProbe:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "--serve", self.url, str(self.directory), self.request_topic,
             self.reply_topic, str(self.reply_bytes)],
            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent,
        )
        assert self._proc.stdout is not None
        ready = await asyncio.to_thread(self._proc.stdout.readline)
        if ready.strip() != b"ready":
            raise RuntimeError("the floor responder did not start")
        await self._client.__aenter__()
        await self._client.subscribe(self.reply_topic, qos=1)
        self._replies = self._client.messages.__aiter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._client.__aexit__(exc_type, exc, tb)
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)

    async def round_trip_ms(self) -> float:
        """One request -> reply through the broker, the responder's two fsyncs included (ms)."""
        t0 = time.perf_counter()
        await self._client.publish(self.request_topic, self.request, qos=1)
        await asyncio.wait_for(self._replies.__anext__(), 10.0)
        return (time.perf_counter() - t0) * 1e3


def main(argv: list[str]) -> int:
    if len(argv) != 6 or argv[0] != "--serve":
        print(__doc__, file=sys.stderr)
        return 2
    _, url, directory, request_topic, reply_topic, reply_bytes = argv
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(url, Path(directory), request_topic, reply_topic, int(reply_bytes)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
