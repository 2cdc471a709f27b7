"""How every segment reaches the broker: URL parsing and an aiomqtt Client with the link's settings.

A broker may be a cluster (the fleet's ground segment on three nats-server nodes, docs/fleet.md): its
address is then a comma-separated list of node URLs (:class:`BrokerList`), and a client that loses or
cannot open its connection moves on to the next node. The session (client id, persistent subscriptions,
undelivered QoS 1 messages) lives in the cluster, not in a node, so the next node resumes it.

TCP_NODELAY is set on the client socket: with Nagle's algorithm against the broker's delayed ACKs a
QoS 1 round trip took 88 ms on the development machine, 0.5 ms without it
(../shared/reference/boards-and-runtime.md, "MQTT here"). The protocol is MQTT 3.1.1, the common
ground of Mosquitto and the embedded amqtt broker. ``mqtts://`` URLs speak TLS 1.2+ with a client
certificate (:class:`TlsFiles`; the broker side is written by ``ground pki init``, docs/security.md).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt

_TLS_SCHEMES = ("mqtts", "ssl")


@dataclass(frozen=True)
class BrokerUrl:
    """``mqtt://[user:password@]host:port`` (port 1883) or ``mqtts://host:port`` (TLS, port 8883)."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "tcp", *_TLS_SCHEMES):
            raise ValueError(f"unsupported broker URL scheme {parts.scheme!r} (use mqtt://host:port or mqtts://)")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host")
        tls = parts.scheme in _TLS_SCHEMES
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ValueError(f"broker URL {url!r} has an invalid port") from None
        return cls(parts.hostname, port, parts.username, parts.password, tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class TlsFiles:
    """A client's TLS material (PEM files, see ``ground pki init``): ``ca`` verifies the broker's
    certificate; ``cert`` and ``key`` are this client's identity (its certificate's CN is its
    username on the broker)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A TLS 1.2+ client context that verifies the broker (name and chain) and presents the identity.
        Raises ValueError naming the file when one is missing or unreadable."""
        for path in (self.ca, self.cert, self.key):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TLS file {path} does not exist")
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cert is not None:
                context.load_cert_chain(str(self.cert), None if self.key is None else str(self.key))
        except ssl.SSLError as exc:
            raise ValueError(f"unusable TLS files ({self.ca}, {self.cert}, {self.key}): {exc}") from None
        return context


@dataclass(frozen=True)
class BrokerList:
    """``mqtt://a:1883,mqtt://b:1883``: the nodes of one (clustered) broker, tried in turn; one URL is a
    list of one. ``nodes[i]`` wraps around, so a client walks the list round robin after failures."""

    urls: tuple[BrokerUrl, ...]

    @classmethod
    def parse(cls, spec: str) -> BrokerList:
        """ValueError naming the bad entry for an empty list, an empty entry or a bad URL."""
        entries = [entry.strip() for entry in spec.split(",")]
        if any(not entry for entry in entries):
            raise ValueError(f"broker list {spec!r} has an empty entry (use mqtt://a:1883,mqtt://b:1883)")
        return cls(tuple(BrokerUrl.parse(entry) for entry in entries))

    def node(self, attempt: int) -> BrokerUrl:
        """The node to try on connection attempt ``attempt`` (0, 1, 2, ...): round robin."""
        return self.urls[attempt % len(self.urls)]

    def __len__(self) -> int:
        return len(self.urls)

    def __str__(self) -> str:
        return ",".join(str(u) for u in self.urls)


def refused_filters(filters: Sequence[tuple[str, int]], granted: Sequence[object]) -> list[str]:
    """The topic filters of a SUBSCRIBE that the broker refused (SUBACK return code 0x80), from what
    ``aiomqtt.Client.subscribe`` returns (ints or paho ReasonCodes, one per filter). A nats-server
    cluster refuses a QoS 1 subscription while it cannot create its JetStream consumer (no stream
    leader for a few seconds after a node died): a client must not carry on as if subscribed."""
    codes = [int(getattr(g, "value", g)) for g in granted]  # type: ignore[call-overload]
    if len(codes) != len(filters):
        return [f for f, _ in filters]
    return [f for (f, _), code in zip(filters, codes, strict=True) if code >= 0x80]


async def subscribe_until_granted(
    client: aiomqtt.Client,
    filters: Sequence[tuple[str, int]],
    *,
    give_up_at: float | None = None,
    backoff_min_s: float = 0.1,
    backoff_max_s: float = 2.0,
) -> list[str]:
    """Subscribe ``client`` to ``filters`` ((topic filter, QoS) pairs) and ask again, on the same
    connection, for those the broker refuses (SUBACK 0x80), backing off from ``backoff_min_s`` doubling
    to ``backoff_max_s``, until every filter is granted (returns []) or the monotonic time
    ``give_up_at`` has passed (returns the filters still refused). aiomqtt.MqttError when the
    connection is lost.

    The connection is kept while filters are refused: on a nats-server cluster each QoS 1 filter is a
    JetStream consumer whose creation may time out (4 s each, one after the other) while streams elect
    leaders after a node died. A client that dropped the connection whenever one filter of several was
    refused created them all again on the next node and, on a loaded host, never had all at once
    (tests/test_nats_cluster.py, the ground's reconnections after a node kill)."""
    pending = list(filters)
    delay = backoff_min_s
    while pending:
        refused = set(refused_filters(pending, await client.subscribe(pending)))
        pending = [(f, q) for f, q in pending if f in refused]
        if not pending or (give_up_at is not None and time.monotonic() + delay > give_up_at):
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, backoff_max_s)
    return [f for f, _ in pending]


_SOCKET_CALLBACKS = ("add_reader", "add_writer", "remove_reader", "remove_writer")


def is_link_loss_noise(context: Mapping[str, object]) -> bool:
    """Whether an asyncio loop error ``context`` (``loop.call_exception_handler``'s dict) is only the
    trace of a connection that was already lost, which the client reports as MqttError anyway:

    - paho asks the loop to watch a socket it closed a moment before (aiomqtt's socket callbacks run
      on the loop later: OSError EBADF, or ValueError for fd -1), seen when a broker node dies;
    - an aiomqtt future (a publish or subscribe in flight) failed with MqttError after its waiter had
      given up (``Future exception was never retrieved``).
    Anything else is a real error."""
    exc = context.get("exception")
    if isinstance(exc, aiomqtt.MqttError):
        return "never retrieved" in str(context.get("message", ""))
    handle = repr(context.get("handle", ""))
    if not any(name in handle for name in _SOCKET_CALLBACKS):
        return False
    return (isinstance(exc, OSError) and exc.errno == errno.EBADF) or (
        isinstance(exc, ValueError) and "file descriptor" in str(exc))


def quiet_link_loss(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """A loop exception handler (``loop.set_exception_handler``): link-loss noise (is_link_loss_noise)
    becomes one WARNING line without a stack trace; everything else goes to asyncio's default handler."""
    if is_link_loss_noise(context):
        logging.getLogger("mqtt").warning("after a lost connection: %s (%s)", context.get("message"),
                                          context.get("exception"))
        return
    loop.default_exception_handler(context)


NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def check_tls(url: BrokerUrl, tls: TlsFiles | None) -> None:
    """ValueError unless TLS files come with an ``mqtts://`` URL and only with one (no silent cleartext)."""
    if url.tls != (tls is not None):
        need = "needs TLS files (ca, cert, key)" if url.tls else "is cleartext but TLS files were given"
        raise ValueError(f"broker {url} {need}")


def publish_packet_bytes(topic: str, payload_bytes: int, qos: int = 1) -> int:
    """Size in bytes of an MQTT 3.1.1 PUBLISH packet (what a broker's ``max_packet_size`` limits):
    fixed header (1 byte + the remaining length in 1-4 bytes), topic (2-byte length + UTF-8),
    packet id (2 bytes, QoS > 0), payload."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + payload_bytes
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3 if remaining < 2_097_152 else 4
    return 1 + length_bytes + remaining


def make_client(
    url: BrokerUrl,
    *,
    identifier: str | None = None,
    clean_session: bool = True,
    will: aiomqtt.Will | None = None,
    keepalive_s: int = 10,
    timeout_s: float = 10.0,
    tls: TlsFiles | None = None,
    manual_ack: bool = False,
) -> aiomqtt.Client:
    """An aiomqtt Client (create it inside the running loop) with TCP_NODELAY and MQTT 3.1.1.

    An ``mqtts://`` URL needs ``tls`` (ValueError otherwise); ``tls`` with a plain ``mqtt://`` URL is
    a ValueError too, so a configuration never silently falls back to cleartext.

    ``manual_ack``: a QoS 1 message received is not acknowledged to the broker (PUBACK) until
    :func:`acknowledge` is called for it. A message never acknowledged stays the broker's: it sends it
    again (DUP) when the same persistent session connects next. flightd acknowledges a job submission
    only once it is journaled, so a crash between receipt and journal loses nothing.
    """
    check_tls(url, tls)
    client = aiomqtt.Client(
        url.host,
        url.port,
        username=url.username,
        password=url.password,
        identifier=identifier,
        clean_session=clean_session,
        will=will,
        keepalive=keepalive_s,
        timeout=timeout_s,
        protocol=aiomqtt.ProtocolVersion.V311,
        socket_options=[NODELAY],
        max_inflight_messages=1000,
        tls_context=None if tls is None else tls.context(),
    )
    client.pending_calls_threshold = 1000  # concurrent QoS 1 publishes are normal here, not a leak
    if manual_ack:
        client._client.manual_ack_set(True)  # paho's switch; aiomqtt 2.x does not expose it
    return client


def acknowledge(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Send the PUBACK of ``message`` (QoS 1) on ``client``, the connection it arrived on, which must
    have been made with ``manual_ack``; nothing for QoS 0. Call it on the event loop's thread. On a
    connection closed meanwhile nothing is sent: the broker delivers the message again on the next."""
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)
