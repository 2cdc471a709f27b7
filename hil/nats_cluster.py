"""A three-node NATS server cluster with its MQTT listener on loopback: the fleet's ground segment broker.

Each node is a ``nats-server`` process (Debian package ``nats-server``, 2.9.10 on this machine) with its
own config file: a server name, a NATS client port, a monitoring port, a cluster port with routes to every
other node, JetStream with its store in the node's own directory, and the MQTT 3.1.1 listener.

Where MQTT state lives (nats-server 2.9 ``server/mqtt.go``; docs.nats.io "MQTT"): sessions
(``$MQTT_sess``), QoS 1 messages (``$MQTT_msgs``, interest retention) and retained messages
(``$MQTT_rmsgs``) are JetStream streams of the account, created by the first MQTT connection. A QoS 1
PUBLISH is acknowledged only once JetStream has stored it; a QoS 1 subscription is a durable JetStream
consumer. Left to itself 2.9 sizes the streams by the number of ``routes`` a node lists (2 here), so the
config sets ``stream_replicas = 3``: every stream and consumer is on all three nodes and any one node
may die with quorum (2 of 3) kept. A client whose node died reconnects to another node with the same
client id and finds its persistent session, its subscriptions and its undelivered QoS 1 messages there
(``link.transport.BrokerList`` is the client's list of nodes). A message handed out by a dead node and
never acknowledged is sent again after ``ack_wait_s``.

What differs from Mosquitto: a ``.`` in a topic level is refused before nats-server 2.10 (the publisher
is disconnected, a subscription gets a SUBACK failure; 2.10 maps it to ``//`` on the NATS side), so
orbitd's topics never carry one (:func:`link.topics.topic_level`); topics with spaces are refused; a
client's will is not published when its node is killed (the node that held it is gone) — a stale
retained ``status`` is recognised by its ``at_utc`` and ``heartbeat_s``; retained messages reach other
nodes' subscribers best-effort (shortly after, not atomically with the PUBACK).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hil import child_process
from hil.embedded_broker import free_port


class NatsServerNotFound(RuntimeError):
    """The nats-server binary is not installed (Debian: ``apt-get install -y nats-server``)."""


def nats_server_binary() -> str:
    for candidate in (shutil.which("nats-server"), "/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if candidate and Path(candidate).exists():
            return candidate
    raise NatsServerNotFound("nats-server is not installed: apt-get install -y nats-server")


def nats_server_version() -> tuple[int, int, int]:
    """(major, minor, patch) of the installed nats-server (``nats-server --version``)."""
    out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise RuntimeError(f"cannot read the nats-server version from {out!r}")
    return int(match[1]), int(match[2]), int(match[3])


def _mqtt_connect_packet(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keepalive 10 s) for ``client_id``."""
    ident = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"
    payload = len(ident).to_bytes(2, "big") + ident
    remaining = len(variable) + len(payload)  # < 128: one length byte
    return bytes([0x10, remaining]) + variable + payload


def mqtt_connack(host: str, port: int, client_id: str, timeout_s: float) -> int | None:
    """The return code of a CONNACK from ``host:port`` (0: accepted), or None when none came.

    A raw socket, not a client library: the readiness check runs before any event loop exists.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            s.sendall(_mqtt_connect_packet(client_id))
            reply = b""
            while len(reply) < 4:
                chunk = s.recv(4 - len(reply))
                if not chunk:
                    return None
                reply += chunk
            s.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return None
    return reply[3] if reply[0] == 0x20 else None


def _healthy(monitor_url: str) -> bool:
    """``/healthz?js-server-only=true`` answers ok: the server is up and JetStream is in contact and
    current with a meta leader (streams and consumers are not asked about: after a restart 2.9.10
    reports the MQTT retained-message consumer "not current" for a long while, harmlessly)."""
    try:
        with urllib.request.urlopen(f"{monitor_url}/healthz?js-server-only=true", timeout=1.0) as response:
            return bool(json.load(response).get("status") == "ok")
    except (OSError, ValueError):
        return False


class NatsNode:
    """One nats-server of the cluster: its ports, its config file, its process."""

    def __init__(self, name: str, workdir: Path, host: str = "127.0.0.1", mqtt_port: int | None = None) -> None:
        self.name = name
        self.host = host
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_port = free_port(host)
        self.cluster_port = free_port(host)
        self.mqtt_port = mqtt_port or free_port(host)
        self.http_port = free_port(host)
        self.config_path = self.workdir / "nats.conf"
        self.log_path = self.workdir / "nats.log"
        self.store_dir = self.workdir / "jetstream"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The MQTT listener, ``mqtt://host:port``."""
        return f"mqtt://{self.host}:{self.mqtt_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def route(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the process (the config file must exist); returns at once, see NatsCluster.wait_ready."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config_path)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )

    def kill(self) -> None:
        """SIGKILL: the node dies as in a crash or a power loss (no lame duck, no goodbye to its routes)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        child_process.stop(self.proc, timeout_s)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class NatsCluster:
    """``size`` nats-server nodes routed to each other, JetStream and MQTT on each; start/stop/kill nodes.

    ``max_payload_bytes`` (NATS ``max_payload``, at most 64 MiB) must exceed flightd's
    ``link.max_payload_bytes`` (8 MiB) plus the MQTT topic and NATS header. ``ack_wait_s``: how long a QoS 1
    message handed to a subscriber waits for its PUBACK before it is sent again (nats default 30 s; a
    message in flight through a node that died is only redelivered after it). ``replicas``: JetStream
    replicas of the MQTT streams and consumers, at most ``size``. ``mqtt_ports``: the nodes' MQTT ports
    (default: free ones); the other ports are always free ones.
    """

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        name: str = "orbitd-ground",
        host: str = "127.0.0.1",
        max_payload_bytes: int = 16 * 1024 * 1024,
        ack_wait_s: float = 5.0,
        replicas: int | None = None,
        mqtt_ports: Sequence[int] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster has at least one node, not {size}")
        self.replicas = min(size, 3) if replicas is None else replicas
        if not 1 <= self.replicas <= size:
            raise ValueError(f"replicas {self.replicas} must be within 1..{size}")
        if not 0 < max_payload_bytes <= 64 * 1024 * 1024:
            raise ValueError("max_payload_bytes must be within 1 B..64 MiB (nats-server's limit)")
        self.workdir = Path(workdir)
        self.name = name
        self.max_payload_bytes = max_payload_bytes
        self.ack_wait_s = ack_wait_s
        if mqtt_ports is not None and len(mqtt_ports) != size:
            raise ValueError(f"{len(mqtt_ports)} MQTT ports for {size} nodes")
        ports = list(mqtt_ports) if mqtt_ports is not None else [None] * size
        self.nodes = [NatsNode(f"n{i + 1}", self.workdir / f"n{i + 1}", host, ports[i]) for i in range(size)]
        self.started_s: float | None = None
        self.ready_s: float | None = None

    @property
    def urls(self) -> list[str]:
        """Every node's MQTT URL, node order."""
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """All nodes as one failover list (``mqtt://a,mqtt://b,...``: link.transport.BrokerList)."""
        return ",".join(self.urls)

    def node_config(self, node: NatsNode) -> str:
        routes = ", ".join(f'"{other.route}"' for other in self.nodes if other is not node)
        return "\n".join(
            [
                f"# {node.name} of cluster {self.name}: written by hil.nats_cluster",
                f'server_name: "{node.name}"',
                f'listen: "{node.host}:{node.client_port}"',
                f'http: "{node.host}:{node.http_port}"',
                f"max_payload: {self.max_payload_bytes}",
                f"max_pending: {max(self.max_payload_bytes * 4, 64 * 1024 * 1024)}",
                "jetstream {",
                f'  store_dir: "{node.store_dir}"',
                "  max_memory_store: 64MB",
                "  max_file_store: 1GB",
                "}",
                "cluster {",
                f'  name: "{self.name}"',
                f'  listen: "{node.host}:{node.cluster_port}"',
                f"  routes: [{routes}]" if routes else "  routes: []",
                "}",
                "mqtt {",
                f'  listen: "{node.host}:{node.mqtt_port}"',
                f"  stream_replicas: {self.replicas}",
                f'  ack_wait: "{self.ack_wait_s:g}s"',
                "  max_ack_pending: 1000",
                "}",
                "",
            ]
        )

    def write_configs(self) -> None:
        for node in self.nodes:
            node.config_path.write_text(self.node_config(node))

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every node and return once each accepts an MQTT connection (JetStream ready)."""
        self.write_configs()
        t0 = time.monotonic()
        self.started_s = t0
        for node in self.nodes:
            node.start()
        try:
            self.wait_ready(self.nodes, timeout_s)
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.monotonic() - t0

    def wait_ready(self, nodes: Sequence[NatsNode], timeout_s: float) -> None:
        """Wait until every node of ``nodes`` is healthy and answers an MQTT CONNECT with CONNACK 0.

        The first MQTT connection to a node creates or loads the account's MQTT streams, which needs the
        JetStream meta leader and stream quorum: this is the real readiness of the MQTT side. An MQTT
        CONNECT before the meta leader is known waits 4 s and fails, hence the health check first.
        """
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            while not _healthy(node.monitor_url):
                self._check_waiting(node, deadline, "healthy")
        for node in nodes:
            while mqtt_connack(node.host, node.mqtt_port, f"hil-ready-{node.name}", timeout_s=5.0) != 0:
                self._check_waiting(node, deadline, "accepting MQTT")

    @staticmethod
    def _check_waiting(node: NatsNode, deadline: float, what: str) -> None:
        if not node.alive():
            raise RuntimeError(f"nats-server {node.name} exited: {node.log()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nats-server {node.name} not {what} in time; log: {node.log()[-2000:]}")
        time.sleep(0.05)

    def stream_cluster(self, stream: str) -> dict[str, Any]:
        """The JetStream ``cluster`` block (``leader``, ``replicas``) of ``stream`` as a live node's
        monitoring endpoint (``/jsz``) reports it once a leader is known; KeyError when none does."""
        for node in self.nodes:
            if not node.alive():
                continue
            url = f"{node.monitor_url}/jsz?accounts=true&streams=true"
            with urllib.request.urlopen(url, timeout=2.0) as response:
                doc = json.load(response)
            for account in doc.get("account_details", []):
                for info in account.get("stream_detail", []):
                    cluster: dict[str, Any] = info.get("cluster", {})
                    if info.get("name") == stream and cluster.get("leader"):
                        return cluster
        raise KeyError(f"no live node knows a leader for stream {stream}")

    def leader(self, stream: str) -> int:
        """Index of the node leading JetStream stream ``stream`` (e.g. ``$MQTT_msgs``: QoS 1 messages)."""
        name = self.stream_cluster(stream)["leader"]
        return [n.name for n in self.nodes].index(name)

    def kill(self, index: int) -> NatsNode:
        """Kill node ``index`` (SIGKILL) and return it."""
        node = self.nodes[index]
        node.kill()
        return node

    def restart(self, index: int, timeout_s: float = 60.0) -> NatsNode:
        """Start node ``index`` again with its store (it catches up from the others)."""
        node = self.nodes[index]
        node.stop()
        node.start()
        self.wait_ready([node], timeout_s)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
