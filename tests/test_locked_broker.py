"""The locked broker of `ground pki init` on a real Mosquitto: TLS only, client certificates, the ACL.

One PKI (satellites sat1 and sat2) and one broker serve the module; every case connects its own
clients. A refused publish or read is shown against a positive control that follows it: a sentinel
message published after the probe (QoS 1, so the broker has routed the probe before it routes the
sentinel) must be the first thing the reader sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiomqtt
import pytest

from ground.cli import main
from ground.pki import Pki, PkiError, bridge_identity, bridge_tls_lines, init_pki, render_acl, revoke_identity
from hil.embedded_broker import EmbeddedBroker
from hil.link.bridge import bridge_config, bridge_topics
from hil.mosquitto_broker import MosquittoBroker
from hil.plant_service import serve
from link.codec import decode
from link.messages import Telemetry
from link.topics import TopicMap
from link.transport import BrokerUrl, TlsFiles, make_client

SPACE = ("flightd-sat1", "flightd-sat2", "plant-sat1")
_ids = itertools.count()


def files(pki: Pki, identity: str) -> TlsFiles:
    if identity.startswith("flightd-"):
        return pki.flightd(identity.removeprefix("flightd-"))
    if identity.startswith("plant-"):
        return pki.plant(identity.removeprefix("plant-"))
    return pki.ground(identity)


def connect(broker: MosquittoBroker, pki: Pki, identity: str, client_id: str | None = None) -> aiomqtt.Client:
    url = broker.url if identity in SPACE else broker.ground_url
    client_id = client_id or f"test-{identity}-{next(_ids)}"
    return make_client(BrokerUrl.parse(url), identifier=client_id, tls=files(pki, identity))


async def first_message(client: aiomqtt.Client, timeout_s: float = 5.0) -> tuple[str, bytes]:
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            return str(message.topic), bytes(message.payload)  # type: ignore[arg-type]
    raise AssertionError("no message")


# -------------------------------------------------------------------------- who may connect at all


def mqtt_connect(url: str, tls: TlsFiles | None, check_hostname: bool = True) -> str:
    """Open a connection and send a bare MQTT 3.1.1 CONNECT: ``accepted`` when a CONNACK with return
    code 0 came back, else ``refused: <what happened>``. (Whether the broker's TLS alert or only the
    closed connection reaches the client first varies from run to run, so the detail is for the
    failure message, not for the assertion.)"""
    u = BrokerUrl.parse(url)
    client_id = b"probe"
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    packet = bytes([0x10, len(body)]) + body
    with socket.create_connection((u.host, u.port), timeout=5) as raw:
        sock: socket.socket = raw
        try:
            if tls is not None:
                context = ssl.create_default_context(cafile=str(tls.ca))
                context.check_hostname = check_hostname
                if tls.cert is not None:
                    context.load_cert_chain(str(tls.cert), str(tls.key))
                sock = context.wrap_socket(raw, server_hostname=u.host)
            sock.sendall(packet)
            reply = sock.recv(4)
        except (ssl.SSLError, ConnectionResetError) as exc:
            return f"refused: {exc}"
    if reply == b"\x20\x02\x00\x00":
        return "accepted"
    return f"refused: CONNACK {reply.hex()}" if reply else "refused: connection closed"


def refused(outcome: str) -> bool:
    assert outcome.startswith("refused: "), outcome
    return True


def test_cleartext_anonymous_unknown_and_misplaced_clients_are_refused(pki: Pki, broker: MosquittoBroker,
                                                                       tmp_path: Path) -> None:
    foreign = init_pki(tmp_path / "foreign", ["sat1"], persistence_dir=None)
    anonymous = TlsFiles(pki.ground("ground-user").ca)  # verifies the broker, presents no identity
    stranger = TlsFiles(anonymous.ca, foreign.flightd("sat1").cert, foreign.flightd("sat1").key)
    for url in (broker.url, broker.ground_url):
        assert refused(mqtt_connect(url, None))  # cleartext MQTT on a TLS listener
        assert refused(mqtt_connect(url, anonymous))  # TLS without a client certificate
        assert refused(mqtt_connect(url, stranger))
    # Each segment's listener takes only its own CA's identities.
    assert refused(mqtt_connect(broker.ground_url, pki.flightd("sat1")))
    assert refused(mqtt_connect(broker.url, pki.ground("ground-operator")))
    # Skipping the broker's name check changes nothing on the broker's side.
    assert refused(mqtt_connect(broker.url, anonymous, check_hostname=False))
    # Positive controls: the right identity on the right listener is accepted.
    assert mqtt_connect(broker.url, pki.flightd("sat1")) == "accepted"
    assert mqtt_connect(broker.ground_url, pki.ground("ground-observer")) == "accepted"


# ------------------------------------------------------------------------------------ the ACL

WRITES = [
    # (identity, topic, may publish)
    ("flightd-sat1", "orbitd/v1/sat1/results/j1", True),
    ("flightd-sat2", "orbitd/v1/sat1/results/j1", False),
    ("flightd-sat2", "orbitd/v1/sat1/jobs/j1/state", False),
    ("flightd-sat2", "orbitd/v1/sat1/status", False),
    ("flightd-sat2", "orbitd/v1/sat1/events", False),
    ("flightd-sat2", "orbitd/v1/sat1/tlm/compute", False),
    ("flightd-sat1", "orbitd/v1/sat1/jobs/submit", False),
    ("flightd-sat1", "orbitd/v1/sat1/tlm/power", False),
    ("plant-sat1", "orbitd/v1/sat1/tlm/power", True),
    ("plant-sat1", "orbitd/v1/sat1/tlm/compute", False),
    ("plant-sat1", "orbitd/v1/sat2/tlm/power", False),
    ("plant-sat1", "orbitd/v1/sat1/cmd", False),
    ("ground-user", "orbitd/v1/sat1/jobs/submit", True),
    ("ground-user", "orbitd/v1/sat1/models/upload/u1", False),
    ("ground-user", "orbitd/v1/sat1/results/j1", False),
    ("ground-observer", "orbitd/v1/sat1/jobs/submit", False),
    ("ground-observer", "orbitd/v1/sat1/cmd", False),
    ("ground-operator", "orbitd/v1/sat1/models/upload/u1", True),
    ("ground-operator", "orbitd/v1/sat1/seq/cmd", True),
    ("ground-user", "orbitd/v1/sat1/seq/cmd", False),
    ("ground-operator", "orbitd/v1/sat1/status", False),
]


@pytest.mark.parametrize(("identity", "topic", "allowed"), WRITES)
async def test_publish_rights(pki: Pki, broker: MosquittoBroker, identity: str, topic: str, allowed: bool) -> None:
    sentinel = "orbitd/v1/sat1/cmd"
    async with connect(broker, pki, "ground-operator") as watcher:
        await watcher.subscribe("orbitd/v1/#", qos=1)
        async with connect(broker, pki, identity) as publisher:
            await publisher.publish(topic, b"probe", qos=1)
        await watcher.publish(sentinel, b"sentinel", qos=1)
        assert await first_message(watcher) == ((topic, b"probe") if allowed else (sentinel, b"sentinel"))


READS = [
    # (reader, topic, publisher, may read)
    ("flightd-sat1", "orbitd/v1/sat1/jobs/submit", "ground-operator", True),
    ("flightd-sat1", "orbitd/v1/sat1/seq/cmd", "ground-operator", True),
    ("flightd-sat2", "orbitd/v1/sat1/seq/cmd", "ground-operator", False),
    ("flightd-sat2", "orbitd/v1/sat1/jobs/submit", "ground-operator", False),
    ("flightd-sat2", "orbitd/v1/sat1/cmd", "ground-operator", False),
    ("flightd-sat2", "orbitd/v1/sat1/models/upload/u1", "ground-operator", False),
    ("flightd-sat2", "orbitd/v1/sat1/tlm/power", "plant-sat1", False),
    ("plant-sat1", "orbitd/v1/sat1/cmd", "ground-operator", False),
    ("ground-user", "orbitd/v1/sat1/jobs/submit", "ground-operator", False),
    ("ground-user", "orbitd/v1/sat1/results/j1", "flightd-sat1", True),
    ("ground-observer", "orbitd/v1/sat1/results/j1", "flightd-sat1", True),
]
SENTINELS = {
    # a topic each reader may read, and who publishes it
    "flightd-sat1": ("orbitd/v1/sat1/cmd", "ground-operator"),
    "flightd-sat2": ("orbitd/v1/sat2/cmd", "ground-operator"),
    "plant-sat1": ("orbitd/v1/sat1/tlm/compute", "flightd-sat1"),
    "ground-user": ("orbitd/v1/sat1/status", "flightd-sat1"),
    "ground-observer": ("orbitd/v1/sat1/status", "flightd-sat1"),
}


@pytest.mark.parametrize(("reader", "topic", "publisher", "allowed"), READS)
async def test_read_rights(pki: Pki, broker: MosquittoBroker, reader: str, topic: str, publisher: str,
                           allowed: bool) -> None:
    sentinel, sentinel_publisher = SENTINELS[reader]
    async with connect(broker, pki, reader) as r:
        # A wildcard subscription too: the ACL is checked on every delivery, not only on SUBSCRIBE.
        await r.subscribe([(topic, 1), (sentinel, 1), ("orbitd/v1/#", 1)])
        async with connect(broker, pki, publisher) as p:
            await p.publish(topic, b"probe", qos=1)
        async with connect(broker, pki, sentinel_publisher) as p:
            await p.publish(sentinel, b"sentinel", qos=1)
        assert await first_message(r) == ((topic, b"probe") if allowed else (sentinel, b"sentinel"))


async def test_space_client_ids_are_pinned_to_the_certificate(pki: Pki, broker: MosquittoBroker) -> None:
    """sat2's identity connecting with client id ``flightd-sat1`` does not take over sat1's session."""
    async with connect(broker, pki, "flightd-sat1", client_id="flightd-sat1") as sat1:
        await sat1.subscribe("orbitd/v1/sat1/jobs/submit", qos=1)
        async with connect(broker, pki, "flightd-sat2", client_id="flightd-sat1"):
            async with connect(broker, pki, "ground-operator") as op:
                await op.publish("orbitd/v1/sat1/jobs/submit", b"job", qos=1)
            assert await first_message(sat1) == ("orbitd/v1/sat1/jobs/submit", b"job")


async def test_a_revoked_identity_is_refused_after_the_broker_restarts(pki: Pki, tmp_path: Path) -> None:
    own = init_pki(tmp_path / "pki", ["sat1", "sat2"], persistence_dir=None)
    broker = MosquittoBroker(tmp_path / "broker", locked=own.broker_dir)
    broker.start()
    try:
        async with connect(broker, own, "flightd-sat2"):
            pass
        cert = own.flightd("sat2").cert
        assert cert is not None
        assert revoke_identity(own.root, cert) == "flightd-sat2"
        broker.stop()
        broker.start()
        assert refused(mqtt_connect(broker.url, own.flightd("sat2")))
        assert mqtt_connect(broker.url, own.flightd("sat1")) == "accepted"  # the others are unaffected
    finally:
        broker.stop()
    with pytest.raises(PkiError, match="not issued by this PKI"):
        revoke_identity(own.root, pki.flightd("sat1").cert or Path())


# ----------------------------------------------------------------------------- configuration


def test_every_listener_requires_a_certificate_and_nothing_is_anonymous(pki: Pki) -> None:
    conf = (pki.broker_dir / "mosquitto.conf").read_text().splitlines()
    listeners = [i for i, line in enumerate(conf) if line.startswith("listener ")]
    assert len(listeners) == 2
    for start in listeners:
        block = conf[start : start + 13]
        for line in ("allow_anonymous false", "require_certificate true", "use_identity_as_username true"):
            assert line in block, (line, block)
    assert not any(line.startswith("allow_anonymous true") for line in conf)


def test_acl_refuses_unknown_roles_and_init_refuses_to_overwrite(pki: Pki) -> None:
    with pytest.raises(PkiError, match="unknown role 'root'"):
        render_acl(["sat1"], {"ground-x": "root"})
    with pytest.raises(PkiError, match="refusing to replace"):
        init_pki(pki.root, ["sat1"])
    acl = (pki.broker_dir / "acl").read_text()
    assert "orbitd/v1/#" not in acl.split("user flightd-sat1")[1].split("user ")[0]


async def test_embedded_broker_is_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        EmbeddedBroker(host="0.0.0.0")
    async with EmbeddedBroker(host="127.0.0.1") as b:
        assert b.url.startswith("mqtt://127.0.0.1:")


def test_tls_urls_and_files_never_fall_back_to_cleartext(pki: Pki, tmp_path: Path) -> None:
    assert BrokerUrl.parse("mqtts://broker.example") == BrokerUrl("broker.example", 8883, tls=True)
    assert str(BrokerUrl.parse("mqtts://h:9000")) == "mqtts://h:9000"
    assert BrokerUrl.parse("mqtt://h").tls is False
    with pytest.raises(ValueError, match="needs TLS files"):
        make_client(BrokerUrl.parse("mqtts://h"))
    with pytest.raises(ValueError, match="cleartext but TLS files were given"):
        make_client(BrokerUrl.parse("mqtt://h"), tls=pki.ground("ground-user"))
    with pytest.raises(ValueError, match="does not exist"):
        TlsFiles(tmp_path / "nope.pem").context()


def test_ground_pki_cli_writes_a_broker_config_for_the_container(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = ["pki", "init", "--out", str(tmp_path / "pki"), "--sat", "sat7", "--host", "mosquitto",
            "--config-dir", "/mosquitto/config", "--ground", "ops=operator"]
    assert main(args) == 0
    assert "sat7/" in capsys.readouterr().out
    conf = (tmp_path / "pki" / "broker" / "mosquitto.conf").read_text()
    assert "cafile /mosquitto/config/space-ca.pem" in conf and "acl_file /mosquitto/config/acl" in conf
    assert (tmp_path / "pki" / "ground" / "ops.pem").is_file()
    assert main(args) == 1
    assert "refusing to replace" in capsys.readouterr().err


def test_ground_pki_cli_keeps_a_local_brokers_store_beside_its_files(tmp_path: Path) -> None:
    """Without --config-dir the broker runs on this machine: its store is an existing folder there, not
    the container's /mosquitto/data/ (Mosquitto fails to save its store to a missing folder)."""
    assert main(["pki", "init", "--out", str(tmp_path / "pki"), "--sat", "sat7"]) == 0
    broker = (tmp_path / "pki" / "broker").resolve()
    conf = (broker / "mosquitto.conf").read_text()
    assert f"persistence_location {broker / 'data'}/" in conf and "/mosquitto/" not in conf
    assert (broker / "data").is_dir()


# ------------------------------------------------------------------ the onboard broker's bridge


async def _wait_bridged(local: aiomqtt.Client, watcher: aiomqtt.Client, topic: str) -> None:
    """Publish ``topic`` onboard until the watcher on the ground sees it (the bridge is up)."""
    async with asyncio.timeout(15):
        while True:
            await local.publish(topic, b"hello", qos=1)
            try:
                async with asyncio.timeout(0.3):
                    async for message in watcher.messages:
                        if str(message.topic) == topic:
                            return
            except TimeoutError:
                continue


@contextlib.contextmanager
def bridged_board(workdir: Path, ground: MosquittoBroker, pki: Pki, identity: str,
                  trees: Sequence[TopicMap]) -> Iterator[MosquittoBroker]:
    """An onboard Mosquitto bridging ``trees`` to the ground broker with ``identity``'s bridge certificate."""
    first, *more = trees
    lines = bridge_config(first, ("127.0.0.1", ground.port), name=bridge_identity(identity), restart_timeout_s=1)
    lines += [topic.line() for tree in more for topic in bridge_topics(tree)]
    onboard = MosquittoBroker(workdir, extra_config=[*lines, *bridge_tls_lines(pki.bridge(identity))])
    onboard.start()
    try:
        yield onboard
    finally:
        onboard.stop()


async def test_the_onboard_bridge_carries_its_satellites_traffic(pki: Pki, broker: MosquittoBroker,
                                                                 tmp_path: Path) -> None:
    """sat1's onboard broker bridged to the locked ground broker with sat1's bridge identity carries
    sat1's downlink (flightd's and the board's telemetry) and uplink."""
    topics = TopicMap("sat1")
    with bridged_board(tmp_path / "onboard", broker, pki, "sat1", [topics]) as onboard:
        async with (
            connect(broker, pki, "ground-operator") as op,
            make_client(BrokerUrl.parse(onboard.url), identifier="flightd-sat1") as local,
        ):
            await op.subscribe(topics.everything, qos=1)
            await local.subscribe(topics.job_submit, qos=1)
            await _wait_bridged(local, op, topics.result("probe"))
            await local.publish(topics.telemetry("power"), b"board", qos=0)
            await local.publish(topics.status, b"status", qos=1)
            seen = set()
            async with asyncio.timeout(5):
                async for message in op.messages:
                    seen.add(str(message.topic))
                    if {topics.telemetry("power"), topics.status} <= seen:
                        break
            await op.publish(topics.job_submit, b"job", qos=1)
            assert await first_message(local) == (topics.job_submit, b"job")


async def test_a_bridge_with_another_satellites_identity_carries_nothing_of_this_one(
    pki: Pki, broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A board with sat2's bridge identity, configured to bridge sat1's trees as well as sat2's:
    sat2's traffic flows (the bridge is up), sat1's does not, either way."""
    sat1, sat2 = TopicMap("sat1"), TopicMap("sat2")
    with bridged_board(tmp_path / "onboard", broker, pki, "sat2", [sat2, sat1]) as onboard:
        async with (
            connect(broker, pki, "ground-operator") as op,
            make_client(BrokerUrl.parse(onboard.url), identifier="local") as local,
        ):
            await op.subscribe("orbitd/v1/#", qos=1)
            await local.subscribe([(sat1.job_submit, 1), (sat2.job_submit, 1)])
            await _wait_bridged(local, op, sat2.result("probe"))
            await local.publish(sat1.result("forged"), b"forged", qos=1)
            await local.publish(sat2.result("sentinel"), b"sentinel", qos=1)
            async with asyncio.timeout(5):
                async for message in op.messages:
                    if str(message.topic) != sat2.result("probe"):
                        assert (str(message.topic), message.payload) == (sat2.result("sentinel"), b"sentinel")
                        break
            await op.publish(sat1.job_submit, b"not for you", qos=1)
            await op.publish(sat2.job_submit, b"yours", qos=1)
            assert await first_message(local) == (sat2.job_submit, b"yours")


async def test_the_plant_publishes_its_channels_as_its_own_identity(pki: Pki, broker: MosquittoBroker) -> None:
    """``hil plant`` on the locked broker (plant-sat1): the ground observer receives its power channel."""
    topics = TopicMap("sat1")
    async with connect(broker, pki, "ground-observer") as observer:
        await observer.subscribe(topics.telemetry("power"), qos=0)
        plant = asyncio.create_task(serve(broker.url, "sat1", "nominal-550km", warp=200.0, rate_hz=1.0,
                                          duration_s=30.0, tls=pki.plant("sat1")))
        try:
            topic, payload = await first_message(observer, timeout_s=10)
            assert topic == topics.telemetry("power") and decode(payload, Telemetry).message.sat == "sat1"
        finally:
            plant.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await plant
