"""Broker addresses: one URL or a cluster's node list; SUBACK refusals."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from flight.settings import FlightSettings
from link.transport import BrokerList, BrokerUrl, refused_filters


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
