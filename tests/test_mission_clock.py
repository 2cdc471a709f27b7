"""flight.mission_clock.MissionClock: rate under time warp (closed form of the exponential smoothing),
advancing between samples, and no step backwards on a sample that arrives out of order."""

from __future__ import annotations

import itertools

import pytest

from flight.mission_clock import MissionClock


def test_before_telemetry_mission_time_is_wall_time_since_start() -> None:
    clock = MissionClock(start_wall_s=1000.0)
    assert clock.now(1000.0) == 0.0
    assert clock.now(1012.5) == 12.5


@pytest.mark.parametrize("warp", [1.0, 10.0, 60.0])
def test_rate_converges_to_warp_as_the_smoothing_closed_form(warp: float) -> None:
    """rate_n = warp - (warp - 1) (1 - a)^(n - 1) after n samples spaced 1 s of wall time apart."""
    a = 0.2
    clock = MissionClock(start_wall_s=0.0, smoothing=a)
    t0 = 5000.0
    for n in range(1, 30):
        wall = float(n)
        clock.observe(t0 + warp * wall, wall)
        assert clock.rate == pytest.approx(warp - (warp - 1.0) * (1 - a) ** (n - 1), rel=1e-12)
        # right at a sample, now() is the sample's mission time
        assert clock.now(wall) == pytest.approx(t0 + warp * wall)
        # between samples it advances at the estimated rate
        assert clock.now(wall + 0.5) == pytest.approx(t0 + warp * wall + 0.5 * clock.rate)
    assert clock.rate == pytest.approx(warp, rel=1e-2)


def test_now_keeps_advancing_when_telemetry_stops() -> None:
    clock = MissionClock(start_wall_s=0.0, rate=10.0)
    clock.observe(100.0, 1.0)
    clock.observe(110.0, 2.0)
    readings = [clock.now(2.0 + k * 0.25) for k in range(10)]
    assert all(b > a for a, b in itertools.pairwise(readings))
    assert readings[-1] == pytest.approx(110.0 + 9 * 0.25 * 10.0)


def test_late_out_of_order_sample_does_not_move_time_backwards_or_change_the_rate() -> None:
    clock = MissionClock(start_wall_s=0.0)
    for wall in (1.0, 2.0, 3.0):
        clock.observe(10.0 * wall, wall)
    rate = clock.rate
    before = clock.now(3.5)
    clock.observe(15.0, 3.5)  # a sample from t=15 s arrives after t=30 s
    assert clock.rate == rate
    assert clock.now(3.5) == pytest.approx(before)
    assert clock.now(4.0) == pytest.approx(30.0 + rate)


def test_rate_is_clamped_and_tiny_wall_steps_are_ignored() -> None:
    clock = MissionClock(start_wall_s=0.0, smoothing=1.0, max_rate=1000.0)
    clock.observe(0.0, 0.0)
    clock.observe(1e9, 1.0)
    assert clock.rate == 1000.0
    clock.observe(2e9, 1.0 + 1e-4)  # two samples in one burst: no rate measurement from a 0.1 ms gap
    assert clock.rate == 1000.0


def test_mission_from_utc_maps_deadlines_at_the_current_rate() -> None:
    clock = MissionClock(start_wall_s=0.0, rate=10.0)
    clock.observe(500.0, 2.0)
    # 3 s of UTC from now is 30 s of mission time under a warp of 10
    assert clock.mission_from_utc(1_700_000_003.0, 1_700_000_000.0, 2.0) == pytest.approx(530.0)


def test_now_never_runs_backwards_when_a_late_sample_re_anchors() -> None:
    """A sample stamped t=100 that arrives 0.5 s late at warp 10 re-anchors the estimate 5 s lower
    than what was already returned; now() must still not go back."""
    clock = MissionClock(start_wall_s=0.0, smoothing=1.0)
    clock.observe(0.0, 0.0)
    clock.observe(100.0, 10.0)  # rate 10
    before = clock.now(12.0)  # 120 s
    clock.observe(110.0, 11.5)  # 110 s at wall 11.5: anchored lower than 115 expected
    after = clock.now(12.0)
    assert before == 120.0
    assert after >= before
