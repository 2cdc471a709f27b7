"""Broker addresses: one URL or a cluster's node list; SUBACK refusals; a ground client's failover."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from flight.settings import FlightSettings
from ground.client import GroundClient
from hil.embedded_broker import free_port
from hil.mosquitto_broker import MosquittoBroker
from link.transport import BrokerList, BrokerUrl, make_client, refused_filters


def test_one_url_is_a_list_of_one() -> None:
    nodes = BrokerList.parse("mqtt://127.0.0.1:1884")
    assert len(nodes) == 1 and nodes.node(0) == nodes.node(5) == BrokerUrl("127.0.0.1", 1884)


def test_cluster_nodes_round_robin() -> None:
    nodes = BrokerList.parse("mqtt://a:1883, mqtt://b:1884,c")
    assert [str(nodes.node(i)) for i in range(4)] == ["mqtt://a:1883", "mqtt://b:1884", "mqtt://c:1883",
                                                      "mqtt://a:1883"]
    assert str(nodes) == "mqtt://a:1883,mqtt://b:1884,mqtt://c:1883"


@pytest.mark.parametrize(("spec", "error"), [
    ("mqtt://a:1883,,mqtt://b:1883", "empty entry"),
    ("", "empty entry"),
    ("mqtt://a:1883,http://b", "unsupported broker URL scheme"),
    ("mqtt://a:99999", "invalid port"),
])
def test_bad_lists_are_refused_naming_the_entry(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        BrokerList.parse(spec)
    with pytest.raises(ValidationError, match=error):
        FlightSettings.load(broker=spec)


def test_refused_filters_reads_ints_and_reason_codes() -> None:
    filters = [("a/+", 1), ("b/c", 1), ("d/#", 0)]
    assert refused_filters(filters, [1, 0x80, 0]) == ["b/c"]
    codes = [ReasonCode(PacketTypes.SUBACK, identifier=i) for i in (0x80, 1, 0)]
    assert refused_filters(filters, codes) == ["a/+"]
    assert refused_filters(filters, [1]) == ["a/+", "b/c", "d/#"]  # a SUBACK that does not match: all


async def test_ground_client_skips_a_dead_node_and_resubscribes_after_a_restart(mosquitto: MosquittoBroker) -> None:
    """The first node of the list is down: the client uses the second. The broker restarts under it: the
    client reconnects by itself and its subscription works again (a message published after the
    restart arrives on the queue it had before)."""
    dead = f"mqtt://127.0.0.1:{free_port()}"
    async with GroundClient(f"{dead},{mosquitto.url}", "sat1", timeout_s=5) as ground:
        assert str(ground.url) == mosquitto.url
        queue = await ground.watch_topic("orbitd/v1/sat1/events")
        mosquitto.stop()
        mosquitto.start()
        async with make_client(BrokerUrl.parse(mosquitto.url), identifier="test-failover-pub") as pub:
            deadline = asyncio.get_running_loop().time() + 15
            while queue.empty():  # until the client is back and subscribed again
                assert asyncio.get_running_loop().time() < deadline, "no message after the restart"
                await pub.publish("orbitd/v1/sat1/events", b"after restart", qos=1)
                await asyncio.sleep(0.2)
        topic, payload = queue.get_nowait()
        assert (topic, payload) == ("orbitd/v1/sat1/events", b"after restart")


def test_free_ports_lie_below_the_ephemeral_range_and_are_not_handed_out_twice() -> None:
    """Test fixtures' ports are never ones the kernel may give an outgoing connection meanwhile."""
    from hil.embedded_broker import _ephemeral_low

    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10_000 <= p < _ephemeral_low() for p in ports)


def test_link_loss_noise_is_one_line_and_real_errors_stay_errors(caplog: pytest.LogCaptureFixture) -> None:
    """paho asking the loop to watch a socket it has just closed (a broker node died) is one WARNING
    without a stack trace; an unrelated error in a callback still reaches asyncio's default handler."""
    import logging
    import socket

    from link.transport import quiet_link_loss

    def boom() -> None:
        raise RuntimeError("a real bug")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(quiet_link_loss)
        sock = socket.socket()
        fd = sock.fileno()
        sock.close()
        loop.call_soon(loop.add_writer, fd, lambda: None)  # as aiomqtt's _on_socket_register_write does
        failed: asyncio.Future[None] = loop.create_future()
        failed.set_exception(aiomqtt.MqttCodeError(128, "Unexpected disconnection"))
        del failed  # never retrieved
        loop.call_soon(boom)
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
        import gc

        gc.collect()
    quiet = [r for r in caplog.records if r.name == "mqtt"]
    assert len(quiet) == 2 and all(r.levelno == logging.WARNING and r.exc_info is None for r in quiet)
    assert "Bad file descriptor" in quiet[0].getMessage() or "Bad file descriptor" in quiet[1].getMessage()
    real = [r for r in caplog.records if r.name == "asyncio"]
    assert len(real) == 1 and real[0].levelno == logging.ERROR and "a real bug" in str(real[0].exc_info)
