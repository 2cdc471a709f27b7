"""Shared fixtures: a real Mosquitto per test (own config, free loopback port), a three-node nats-server
cluster, the embedded broker, and per module a PKI with its locked Mosquitto (``pki``, ``broker``).

The board install (``pip install orbitd``: link/ and flight/, Python 3.10+) has none of the ground's or
the simulator's packages; scripts/test.sh runs the link/flight tests in one (``ORBITD_BOARD_TESTS=1``,
always on Python 3.10). There this file imports no hil/ module (the fixtures import theirs when used),
and :func:`pytest_ignore_collect` leaves out the test modules that need more than the board install
(:mod:`tests.board_install`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.board_install import BOARD_TESTS, needs_more_than_the_board
from tests.support import FlightdProcess, wait_online

if TYPE_CHECKING:
    from ground.pki import Pki
    from hil.embedded_broker import EmbeddedBroker
    from hil.mosquitto_broker import MosquittoBroker
    from hil.nats_cluster import NatsCluster

REPO = Path(__file__).resolve().parent.parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """On the board install, skip collecting the test modules that import the ground or the simulator."""
    if BOARD_TESTS and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return needs_more_than_the_board(collection_path) or None
    return None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running Mosquitto 2.x with ``set_tcp_nodelay true``; restartable via ``stop()``/``start()``."""
    from hil.mosquitto_broker import MosquittoBroker

    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-server nodes routed to each other, JetStream (MQTT streams R3) and MQTT on each."""
    from hil.nats_cluster import NatsCluster

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
    from ground.pki import init_pki

    return init_pki(tmp_path_factory.mktemp("pki") / "orbitd-pki", ["sat1", "sat2"], persistence_dir=None)


@pytest.fixture(scope="module")
def broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """The locked Mosquitto of ``pki``: TLS listeners ``url`` (space) and ``ground_url``, the ACL."""
    from hil.mosquitto_broker import MosquittoBroker

    b = MosquittoBroker(tmp_path_factory.mktemp("locked"), locked=pki.broker_dir)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
async def embedded_broker() -> AsyncIterator[EmbeddedBroker]:
    """The in-process amqtt broker of the zero-setup path."""
    from hil.embedded_broker import EmbeddedBroker

    async with EmbeddedBroker() as broker:
        yield broker
