"""An in-process MQTT broker (amqtt) for the zero-setup path: no Mosquitto to install.

amqtt 0.12 speaks MQTT 3.1.1 only, does not enforce keepalive (a hung client's will never fires) and
is 2-4x slower than Mosquitto (../shared/reference/boards-and-runtime.md). It is configured
explicitly: loopback only, anonymous access, no $SYS or logging plugins.

It has no TLS, no authentication and no ACL: anyone who reaches it may publish on any topic. So it
refuses to listen anywhere but on a loopback address (127.0.0.0/8, ::1); a satellite, a board or
anything reachable from a network uses the locked Mosquitto of ``ground pki init`` (docs/security.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker


class _SnapshotIterDict(dict[Any, Any]):
    """A dict whose iteration walks a snapshot of its keys.

    amqtt 0.12.1 iterates its subscription table across ``await``s when a client connects
    (``Broker._handle_client_session``); another client subscribing meanwhile raised "dictionary
    changed size during iteration" and killed the connecting client's session (seen in ``hil sil``).
    """

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().keys()))


def check_loopback(host: str) -> None:
    """ValueError unless ``host`` is a loopback address (or ``localhost``): the embedded broker admits anyone."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"the embedded broker has no authentication and listens on loopback only, not {host!r}: "
            "use Mosquitto with `ground pki init` (docs/security.md) for anything reachable from a network"
        )


LOCAL_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
"""Linux's ephemeral range: the local ports the kernel gives outgoing connections (ip(7))."""
_handed_out: set[int] = set()


def _ephemeral_low(default: int = 32768) -> int:
    try:
        return int(LOCAL_PORT_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port(host: str = "127.0.0.1", low: int = 10_000) -> int:
    """A TCP port that was free on ``host`` a moment ago, below the kernel's ephemeral range and not
    handed out before by this process.

    A port the kernel chose for ``bind(0)`` lies in the ephemeral range, which the kernel also gives
    outgoing connections: between this call and the server's own bind, any client connection may take
    it (a nats-server node failed "address already in use" that way under load). Ports below the
    range are never taken implicitly. RuntimeError when none is free after 200 tries."""
    high = max(low + 1, _ephemeral_low())
    for _ in range(200):
        port = random.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port on {host} in {low}..{high - 1}")


class EmbeddedBroker:
    """``async with EmbeddedBroker() as b:`` serves MQTT on ``b.url`` until the block ends."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        check_loopback(host)
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 64}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    async def start(self) -> None:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._broker = Broker(self._config())
        self._broker._subscriptions = _SnapshotIterDict()
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def serve_forever(host: str, port: int) -> None:
    """Run a broker until cancelled (``hil broker``)."""
    async with EmbeddedBroker(host, port):
        await asyncio.Event().wait()
