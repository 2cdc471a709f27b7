"""Shared fixtures: a real Mosquitto per test (own config, free loopback port), a three-node nats-server
cluster, the embedded broker, and per module a PKI with its locked Mosquitto (``pki``, ``broker``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ground.pki import Pki, init_pki
from hil.embedded_broker import EmbeddedBroker
from hil.mosquitto_broker import MosquittoBroker
from hil.nats_cluster import NatsCluster
from tests.support import FlightdProcess, wait_online

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running Mosquitto 2.x with ``set_tcp_nodelay true``; restartable via ``stop()``/``start()``."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-server nodes routed to each other, JetStream (MQTT streams R3) and MQTT on each."""
    with NatsCluster(tmp_path / "nats") as cluster:
        yield cluster


@pytest.fixture
async def flightd(mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path) -> AsyncIterator[FlightdProcess]:
    """flightd (a real process) on the ``mosquitto`` fixture, with the test module's ``models_dir``."""
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir)
    proc.start()
    try:
        await wait_online(mosquitto.url)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A PKI of `ground pki init` for satellites sat1 and sat2, shared by a test module (docs/security.md)."""
    return init_pki(tmp_path_factory.mktemp("pki") / "orbitd-pki", ["sat1", "sat2"], persistence_dir=None)


@pytest.fixture(scope="module")
def broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """The locked Mosquitto of ``pki``: TLS listeners ``url`` (space) and ``ground_url``, the ACL."""
    b = MosquittoBroker(tmp_path_factory.mktemp("locked"), locked=pki.broker_dir)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
async def embedded_broker() -> AsyncIterator[EmbeddedBroker]:
    """The in-process amqtt broker of the zero-setup path."""
    async with EmbeddedBroker() as broker:
        yield broker
