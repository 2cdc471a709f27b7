"""flight.mission_clock.MissionClock: in flight, time advances at rate 1 from the latest sample (however
the samples bunch up); under a simulator it is the latest time tone, never extrapolated, until the
tone is lost for ``tone_timeout_s`` (then it flywheels); never a step backwards."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.mission_clock import TONE_TIMEOUT_S, MissionClock


def test_before_telemetry_mission_time_is_wall_time_since_start() -> None:
    clock = MissionClock(start_wall_s=1000.0)
    assert clock.now(1000.0) == 0.0
    assert clock.now(1012.5) == 12.5


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


def test_mission_from_utc_maps_deadlines_at_the_current_rate() -> None:
    clock = MissionClock(start_wall_s=0.0, rate=10.0)
    clock.observe(500.0, 2.0)
    # 3 s of UTC from now is 30 s of mission time under a warp of 10
    assert clock.mission_from_utc(1_700_000_003.0, 1_700_000_000.0, 2.0) == pytest.approx(530.0)


def test_now_never_runs_backwards_when_a_late_sample_re_anchors() -> None:
    """A sample stamped t=100 that arrives 0.5 s late at warp 10 re-anchors the estimate 5 s lower
    than what was already returned; now() must still not go back."""
    clock = MissionClock(start_wall_s=0.0, rate=10.0)
    clock.observe(0.0, 0.0)
    clock.observe(100.0, 10.0)
    before = clock.now(12.0)  # 120 s
    clock.observe(110.0, 11.5)  # 110 s at wall 11.5: anchored lower than 115 expected
    after = clock.now(12.0)
    assert before == 120.0
    assert after >= before


def test_a_burst_of_late_samples_does_not_run_flight_time_ahead() -> None:
    """issue 10 item 8: samples every 0.2 s, then a 0.6 s stall and three delivered 1 ms apart. The old
    warp estimate measured 200 s/s from the burst and ran mission time 40 s ahead within 0.2 s (SAFE
    on stale telemetry). In flight the rate is 1: mission time is the latest sample plus wall time."""
    clock = MissionClock(start_wall_s=0.0)
    for k in range(10):
        clock.observe(0.2 * k, 0.2 * k)
    for j, t in enumerate((2.0, 2.2, 2.4)):  # due at 2.0, 2.2, 2.4; all delivered at 2.6 s
        clock.observe(t, 2.6 + 0.001 * j)
    assert clock.rate == 1.0 and clock.current_rate() == 1.0
    assert clock.now(2.8) == pytest.approx(2.4 + (2.8 - 2.602))


def test_under_a_tone_mission_time_is_the_plants_and_stops_when_the_plant_does() -> None:
    """Tones at warp 200 every 50 ms (10 s simulated); then the host stalls 2 s: no tone, no sample.
    Mission time stays at the last tone (no stale telemetry from a late plant) and moves on with the
    next tone; samples do not move it."""
    clock = MissionClock(start_wall_s=0.0)
    for k in range(20):
        clock.tone(10.0 * k, 1.0 + 0.05 * k, 200.0)
        clock.observe(10.0 * k, 1.0 + 0.05 * k)
        assert clock.now(1.0 + 0.05 * k + 0.049) == 10.0 * k
    assert clock.toned and clock.current_rate() == 200.0
    stalled = [clock.now(1.95 + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert stalled == [190.0] * 4
    clock.observe(400.0, 4.0)  # a sample stamped ahead of the tone does not move time: the tone does
    assert clock.now(4.0) == 190.0
    clock.tone(200.0, 4.0, 200.0)
    assert clock.now(4.01) == 200.0


def test_tones_without_samples_make_the_samples_age_as_in_flight() -> None:
    """A dropout the scenario injects: samples stop at t = 280, tones go on; the age of the last
    sample in mission time is tone time - 280, whatever the wall clock does between tones."""
    clock = MissionClock(start_wall_s=0.0)
    wall = 0.0
    for t in range(0, 400, 10):
        wall += 0.05 if t != 300 else 3.0  # one 3 s host stall in the middle: it changes nothing
        clock.tone(float(t), wall, 200.0)
        assert clock.now(wall) - 280.0 == float(t) - 280.0


def test_a_lost_tone_flywheels_at_the_tone_rate() -> None:
    clock = MissionClock(start_wall_s=0.0)
    clock.tone(1000.0, 10.0, 200.0)
    assert clock.now(10.0 + TONE_TIMEOUT_S) == 1000.0
    assert clock.now(10.0 + TONE_TIMEOUT_S + 1.0) == pytest.approx(1000.0 + 200.0 * (TONE_TIMEOUT_S + 1.0))
    # a tone again: time holds (never back) until the tone passes it
    held = clock.now(20.0)
    clock.tone(1010.0, 20.0, 200.0)
    assert clock.now(20.1) == held


def test_out_of_order_tones_and_bad_rates_are_ignored() -> None:
    clock = MissionClock(start_wall_s=0.0)
    clock.tone(100.0, 1.0, 50.0)
    clock.tone(90.0, 1.1, 50.0)
    assert clock.now(1.2) == 100.0
    for bad in (float("nan"), 0.0, -3.0, float("inf")):
        clock.tone(110.0, 1.3, bad)
    assert clock.current_rate() == 50.0
    clock.tone(float("nan"), 1.4, 50.0)
    clock.observe(float("inf"), 1.4)
    assert clock.now(1.5) == 110.0
    # deadlines: 2 s of UTC at the tone's rate of 50 are 100 s of mission time
    assert clock.mission_from_utc(1_700_000_002.0, 1_700_000_000.0, 1.5) == pytest.approx(210.0)


# ------------------------------------------------------------------ elapsed: what relative delays count on


def test_elapsed_in_flight_is_the_monotonic_clock_whatever_telemetry_says() -> None:
    clock = MissionClock(start_wall_s=100.0)
    clock.observe(50.0, 101.0)
    clock.observe(50.0 + 3600.0, 102.0)  # mission time jumps an hour: the monotonic clock does not
    assert clock.elapsed(103.0) == 103.0 and not clock.toned


def test_elapsed_under_a_simulator_is_the_tones_met_not_its_mission_time() -> None:
    clock = MissionClock(start_wall_s=0.0)
    clock.tone(100.0, 1.0, 200.0, met_s=100.0)
    clock.tone(110.0 + 3600.0, 1.05, 200.0, met_s=110.0)  # mission time +1 h, the MET 10 s on
    assert clock.toned and clock.elapsed(1.06) == 110.0 and clock.now(1.06) == 3710.0
    clock.tone(120.0 + 3600.0, 1.1, 200.0, met_s=105.0)  # an earlier MET: out of order, ignored
    assert clock.elapsed(1.1) == 110.0 and clock.now(1.1) == 3710.0
    clock.tone(130.0, 1.15, 200.0, met_s=130.0)  # mission time set back: now() holds, the MET goes on
    assert clock.elapsed(1.15) == 130.0 and clock.now(1.15) == 3710.0
    clock.tone(140.0, 1.2, 200.0)  # a simulator without a MET: t_s stands in
    assert clock.elapsed(1.2) == 140.0
    # the tone lost: elapsed flywheels at the tone's rate, as mission time does, and never goes back
    assert clock.elapsed(1.2 + TONE_TIMEOUT_S + 1.0) == pytest.approx(140.0 + 200.0 * (TONE_TIMEOUT_S + 1.0))
    clock.tone(150.0, 10.0, 200.0, met_s=150.0)
    assert clock.elapsed(10.0) == pytest.approx(140.0 + 200.0 * (TONE_TIMEOUT_S + 1.0))


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0.0, 20.0), st.floats(0.0, 2.0), st.floats(-7200.0, 7200.0)),
                      min_size=1, max_size=60))
def test_elapsed_follows_the_met_through_any_mission_time_jumps(steps: list[tuple[float, float, float]]) -> None:
    """Tones whose mission time jumps about (forward, back, by up to 2 h) while the MET advances by
    arbitrary steps at arbitrary wall times (within the tone timeout): elapsed is the latest MET."""
    clock = MissionClock(start_wall_s=0.0)
    met, wall, offset = 0.0, 0.0, 10_000.0
    for d_met, d_wall, jump in steps:
        met, wall, offset = met + d_met, wall + d_wall, offset + jump
        clock.tone(max(0.0, met + offset), wall, 200.0, met_s=met)
        assert clock.elapsed(wall) == met


def test_one_sample_from_the_future_does_not_run_mission_time_ahead() -> None:
    """Issue 10 item 1 (found by the fuzzing campaign): one plausible-but-wrong ``t_s`` an hour ahead
    used to move mission time, and every good sample after it looked an hour stale."""
    clock = MissionClock(start_wall_s=0.0)
    assert clock.observe(1000.0, wall_s=10.0)
    assert not clock.observe(4600.0, wall_s=11.0)  # refused: one hour ahead, unconfirmed
    assert clock.now(11.0) == pytest.approx(1001.0)
    assert clock.observe(1002.0, wall_s=12.0)  # the good samples go on
    assert clock.now(12.5) == pytest.approx(1002.5)


def test_a_jump_ahead_confirmed_by_a_second_sample_is_taken() -> None:
    """A real time correction (or a source restarted on a new epoch): the second agreeing sample moves the clock."""
    clock = MissionClock(start_wall_s=0.0)
    clock.observe(1000.0, wall_s=10.0)
    assert not clock.observe(5000.0, wall_s=11.0)
    assert clock.observe(5001.0, wall_s=12.0)
    assert clock.now(12.0) == pytest.approx(5001.0)
    assert not clock.observe(9000.0, wall_s=13.0)  # a new wrong time is refused again
    assert clock.observe(5002.0, wall_s=13.0)
    assert not clock.observe(9001.0, wall_s=14.0)  # and is not confirmed by an older candidate across a good sample
