"""The link model (rate, loss bursts, TCP recovery) and the scenario's [link] table, without sockets."""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime

import numpy as np
import pytest

from hil.link.config import LinkConfig, LossConfig, parse_link
from hil.link.model import Direction, LossBursts, TcpRecovery, TokenBucket, arrival_s
from hil.scenario import load_scenario, parse_scenario


def test_token_bucket_serialises_at_the_rate() -> None:
    bucket = TokenBucket(1000.0, depth_bytes=0.0)
    assert [bucket.reserve(1000, 0.0) for _ in range(3)] == pytest.approx([1.0, 2.0, 3.0])
    # offered later than the backlog clears: leaves after its own transmission time
    assert bucket.reserve(500, 10.0) == pytest.approx(10.5)


def test_token_bucket_depth_is_a_burst_allowance_that_refills_only_to_the_depth() -> None:
    bucket = TokenBucket(1000.0, depth_bytes=1500.0)
    assert bucket.reserve(1000, 0.0) == 0.0  # within the bucket: at once
    assert bucket.reserve(1000, 0.0) == pytest.approx(0.5)  # 500 tokens left: 500 bytes of debt
    assert bucket.reserve(1000, 100.0) == 100.0  # refilled, but only to 1500
    assert bucket.reserve(1000, 100.0) == pytest.approx(100.5)
    # a long stream leaves at exactly the rate, whatever the depth
    stream = TokenBucket(2000.0, depth_bytes=1500.0)
    done = [stream.reserve(4096, 0.0) for _ in range(100)]
    assert done[-1] == pytest.approx((100 * 4096 - 1500) / 2000.0)
    assert TokenBucket(None).reserve(10**9, 3.0) == 3.0
    with pytest.raises(ValueError):
        TokenBucket(0.0)


def test_recovery_through_a_burst_follows_exponential_backoff() -> None:
    loss = LossBursts(((10.0, 12.0),))
    tcp = TcpRecovery()
    assert loss.through(9.0, 0.3, tcp).t_s == 9.0
    # sent at 10.1: retries at 10.4, 11.0, 12.2 (0.3, 0.6, 1.2 later): through at 12.2
    got = loss.through(10.1, 0.3, tcp)
    assert got.delivered and got.t_s == pytest.approx(12.2)
    # sent at 11.9: through at the first retry, 12.2
    assert loss.through(11.9, 0.3, tcp).t_s == pytest.approx(12.2)


def test_recovery_backoff_is_capped_and_gives_up_after_the_retries() -> None:
    loss = LossBursts(((0.0, 10_000.0),))
    tcp = TcpRecovery(rto_min_s=0.2, rto_max_s=120.0, retries=15)
    got = loss.through(1.0, 0.2, tcp)
    # sixteen timeouts (the first send and 15 retransmissions): 0.2 * (2^10 - 1) = 204.6 s for the
    # first ten, then six capped at 120 s: 924.6 s, Linux's figure for tcp_retries2 = 15 (ip-sysctl.rst)
    assert not got.delivered and got.t_s - 1.0 == pytest.approx(924.6)


def test_arrival_adds_delay_and_keeps_order() -> None:
    loss, tcp = LossBursts(((1.0, 1.3),)), TcpRecovery()
    assert arrival_s(0.5, 0.05, loss, tcp).t_s == pytest.approx(0.55)
    held = arrival_s(1.1, 0.05, loss, tcp)
    assert held.t_s == pytest.approx(1.1 + 0.1 + 0.2 + 0.05)  # RTO = RTT + 200 ms
    after = arrival_s(1.32, 0.05, loss, tcp, previous_s=held.t_s)
    assert after.t_s == pytest.approx(held.t_s)  # in order, behind the retransmitted bytes


def test_gilbert_elliott_bursts_have_the_configured_statistics() -> None:
    span = 200 * 3600.0
    bursts = LossBursts.gilbert_elliott(600.0, 2.0, 0.0, span, seed=7)
    durations = np.array([b - a for a, b in bursts.bursts])
    assert len(bursts.bursts) == pytest.approx(span / 602.0, rel=0.1)
    assert durations.mean() == pytest.approx(2.0, rel=0.1)
    assert all(a < b <= c for (a, b), (c, _) in zip(bursts.bursts, bursts.bursts[1:], strict=False))
    assert bursts == LossBursts.gilbert_elliott(600.0, 2.0, 0.0, span, seed=7)
    assert bursts != LossBursts.gilbert_elliott(600.0, 2.0, 0.0, span, seed=8)
    assert LossBursts.gilbert_elliott(math.inf, 2.0, 0.0, span, seed=7).bursts == ()
    a, b = bursts.bursts[3]
    assert bursts.holding(0.5 * (a + b)) == (a, b) and bursts.holding(b) is None
    with pytest.raises(ValueError):
        LossBursts(((5.0, 6.0), (5.5, 7.0)))


LINK_TOML = """
[link]
epoch_utc = 2026-03-20T00:00:00Z
uplink_bit_s = 256_000
downlink_bit_s = 2_000_000
pass_delay_s = 0.01
relay_delay_s = 0.05

[link.loss]
bursts_per_hour = 6.0
mean_burst_s = 2.0
seed = 3

[[link.stations]]
name = "weilheim"
latitude_deg = 47.88
longitude_deg = 11.08
altitude_m = 600.0
elevation_mask_deg = 5.0

[[link.stations]]
name = "hartebeesthoek"
latitude_deg = -25.89
longitude_deg = 27.69
altitude_m = 1400.0
elevation_mask_deg = 5.0
"""


def test_link_table_parses_into_plans_and_params() -> None:
    link = parse_link(tomllib.loads(LINK_TOML)["link"])
    assert link.epoch == datetime(2026, 3, 20, tzinfo=UTC)
    assert [s.name for s in link.stations] == ["weilheim", "hartebeesthoek"]
    params = link.params(0.0, 86400.0)
    assert params.rate(Direction.UP) == 32_000.0 and params.rate(Direction.DOWN) == 250_000.0
    assert len(params.loss.bursts) == pytest.approx(144, rel=0.3)
    orbit = load_scenario("nominal-550km").config.orbit
    passes = link.plan("passes", orbit, 0.0, 86400.0)
    assert passes.mode == "passes" and passes.one_way_delay_s == 0.01
    assert {w.station for w in passes.windows} == {"weilheim", "hartebeesthoek"}
    assert 0 < passes.contact_s() < 0.2 * 86400.0
    relay = link.plan("relay", orbit, 0.0, 86400.0)
    assert relay.contacts == ((0.0, 86400.0),) and relay.one_way_delay_s == 0.05
    with pytest.raises(ValueError, match="unknown link mode"):
        link.plan("perfect", orbit, 0.0, 10.0)
    with pytest.raises(ValueError, match="needs"):
        LinkConfig().plan("passes", orbit, 0.0, 10.0)


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"uplink_bps": 1}, "unknown keys"),
        ({"stations": [{"name": "x", "latitude_deg": 0, "longitude_deg": 0, "mask": 5}]}, "unknown keys"),
        ({"stations": [{"name": "x", "latitude_deg": 100, "longitude_deg": 0}]}, "latitude"),
        ({"stations": [{"name": "x", "latitude_deg": 0, "longitude_deg": 0}] * 2}, "duplicate"),
        ({"uplink_bit_s": 0}, "must be > 0"),
        ({"loss": {"bursts_per_hour": -1}}, "bursts_per_hour"),
        ({"loss": {"rate": 1}}, "unknown keys"),
        ({"epoch_utc": 5}, "date-time"),
    ],
)
def test_bad_link_tables_are_refused_with_the_key(table: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_link(table)


def test_bundled_scenario_declares_its_link_and_still_loads() -> None:
    scenario = load_scenario("nominal-550km")
    link = scenario.link
    assert link is not None and len(link.stations) >= 3
    plan = link.plan("passes", scenario.config.orbit, 0.0, 6 * 3600.0)
    assert len(plan.contacts) >= 4
    base = {"orbit": {"altitude_km": 550.0}, "array": {"area_m2": 0.4}}
    assert parse_scenario(base).link is None  # no [link]: the perfect link only
    with_link = parse_scenario({**base, "link": {"relay_delay_s": 0.2}})
    assert with_link.link is not None and with_link.link.relay_delay_s == 0.2
    with pytest.raises(ValueError, match="unknown keys"):  # a bad [link] is refused when the scenario loads
        parse_scenario({**base, "link": {"x": 1}})
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_scenario({**base, "link": {"epoch_utc": "2026-03-20T00:00:00"}})
    assert LossConfig() == LossConfig(0.0, 2.0, 0)
