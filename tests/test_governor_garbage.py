"""The governor treats a reading that cannot be right as failing, never as passing (issue 10, item 1).

A NaN compared with a threshold is False both ways, so a floor or ceiling fed NaN used to pass; a
temperature below absolute zero passes a ceiling; a state of charge of 1.5 passes a floor. Every
limit must count such a value as failing and never as recovered, so a hard limit fed garbage goes SAFE.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.governor import Governor, GovernorConfig, Sample
from flight.governor.limits import LimitChecker, LimitConfig, Limits
from link.messages import Mode
from link.telemetry import CHANNELS, unreadable_values

LIMITS = Limits().configs()
CONFIG = GovernorConfig(telemetry_period_s=1.0, stale_periods=1000.0, required_channels=("power", "thermal"),
                        safe_min_dwell_s=0.0, mode_min_dwell_s=1000.0)
POWER = {"soc": 0.9, "battery_v": 15.8, "battery_wh": 0.9 * 43.0, "solar_w": 80.0, "load_w": 25.0, "bus_w": 15.0,
         "compute_w": 8.0, "sunlit": 1.0}
THERMAL = {"board_c": 35.0, "radiator_c": 5.0}


def impossible(lim: LimitConfig) -> st.SearchStrategy[float]:
    """Values no sensor can read for ``lim``'s measurement: non-finite, or outside its physical range."""
    m = CHANNELS[lim.channel].measurement(lim.key)
    options = [st.sampled_from([math.nan, math.inf, -math.inf])]
    if m.low is not None:
        options.append(st.floats(max_value=m.low - 1e-6 * max(1.0, abs(m.low)), allow_infinity=False,
                                 allow_nan=False, min_value=-1e300))
    if m.high is not None:
        options.append(st.floats(min_value=m.high + 1e-6 * max(1.0, abs(m.high)), allow_infinity=False,
                                 allow_nan=False, max_value=1e300))
    return st.one_of(options)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), lim=st.sampled_from(LIMITS))
def test_every_limit_fails_and_never_recovers_on_an_impossible_value(data: st.DataObject, lim: LimitConfig) -> None:
    value = data.draw(impossible(lim))
    assert lim.failing(value), (lim.name, value)
    assert not lim.recovered(value), (lim.name, value)


@pytest.mark.parametrize(("channel", "key", "value"), [
    ("power", "soc", math.nan), ("power", "soc", 1.5), ("power", "battery_v", -math.inf),
    ("thermal", "board_c", math.nan), ("thermal", "board_c", -300.0), ("thermal", "radiator_c", -math.inf),
])
def test_a_limit_checker_fed_garbage_trips_after_its_debounce(channel: str, key: str, value: float) -> None:
    checker = LimitChecker(LIMITS)
    name = next(lim.name for lim in LIMITS if (lim.channel, lim.key) == (channel, key))
    events = [checker.observe(channel, float(t), {key: value}) for t in range(3)]
    assert [len(e) for e in events] == [0, 0, 1] and events[2][0].tripped and events[2][0].name == name
    assert name in checker.outside_bands()


def run(gov: Governor, samples: list[tuple[str, dict[str, float]]], t0: float, n: int) -> Mode:
    mode = Mode.NOMINAL
    for k in range(n):
        t = t0 + k
        mode = gov.update(t, [Sample(channel, t, values) for channel, values in samples]).mode
    return mode


@pytest.mark.parametrize(("channel", "values"), [
    ("thermal", {"board_c": math.nan, "radiator_c": 5.0}),
    ("thermal", {"board_c": -300.0, "radiator_c": 5.0}),
    ("thermal", {"board_c": 35.0, "radiator_c": math.inf}),
    ("power", {**POWER, "soc": 1.5}),
    ("power", {**POWER, "soc": math.nan, "battery_wh": math.nan}),
    ("thermal", unreadable_values("thermal")),  # what flightd feeds for a sample the link refused
    ("power", unreadable_values("power")),
])
def test_a_hard_limit_fed_garbage_sends_the_governor_safe(channel: str, values: dict[str, float]) -> None:
    gov = Governor(CONFIG)
    assert run(gov, [("power", POWER), ("thermal", THERMAL)], 0.0, 5) is Mode.NOMINAL
    healthy = {"power": POWER, "thermal": THERMAL}
    garbage = [(ch, values if ch == channel else healthy[ch]) for ch in ("power", "thermal")]
    assert run(gov, garbage, 5.0, 3) is Mode.SAFE  # debounce: three samples
    assert any("tripped" in r for r in gov.last.reasons if gov.last is not None)  # a limit, not staleness
    # the budget never used the garbage: it is still a number
    assert gov.last is not None and math.isfinite(gov.last.budget_w)


def test_a_sample_without_one_readable_value_does_not_count_as_fresh() -> None:
    config = GovernorConfig(telemetry_period_s=1.0, stale_periods=2.0, required_channels=("power", "thermal"),
                            safe_min_dwell_s=0.0, mode_min_dwell_s=1000.0)
    gov = Governor(config)
    assert run(gov, [("power", POWER), ("thermal", THERMAL)], 0.0, 3) is Mode.NOMINAL
    run(gov, [("power", POWER), ("thermal", {"board_c": math.nan, "radiator_c": math.nan})], 3.0, 5)
    assert gov.last is not None and any("telemetry thermal stale" in r for r in gov.last.reasons), gov.last.reasons


def test_a_sample_with_a_non_finite_time_is_taken_as_of_now() -> None:
    gov = Governor(CONFIG)
    run(gov, [("power", POWER), ("thermal", THERMAL)], 0.0, 3)
    d = gov.update(3.0, [Sample("thermal", math.nan, THERMAL), Sample("power", 3.0, POWER)])
    assert d.mode is Mode.NOMINAL and gov.latest["thermal"][0] == 3.0


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(), min_size=1, max_size=20), lim=st.sampled_from(LIMITS))
def test_a_limit_judges_an_array_of_satellites_elementwise_as_it_judges_one(values: list[float],
                                                                          lim: LimitConfig) -> None:
    """hil/fleet evaluates each limit's own watchpoint on arrays (one value per satellite)."""
    array = np.array(values)
    assert lim.failing(array).tolist() == [bool(lim.failing(v)) for v in values]
    assert lim.recovered(array).tolist() == [bool(lim.recovered(v)) for v in values]


def test_a_sample_from_the_future_is_failing_and_does_not_make_later_samples_stale() -> None:
    """Issue 10 item 1 (found by the fuzzing campaign): a power sample stamped an hour ahead used to be
    held as the channel's latest; every good sample after it was then 'out of order' and ignored, and
    the channel went stale (SAFE). Now it counts as failing and is never held."""
    config = CONFIG.model_copy(update={"stale_periods": 3.0})
    gov = Governor(config)
    for t in range(5):
        d = gov.update(float(t), [Sample("power", float(t), POWER), Sample("thermal", float(t), THERMAL)])
    assert d.mode is not Mode.SAFE
    gov.update(5.0, [Sample("power", 3605.0, POWER)])
    assert gov.latest["power"][0] == 4.0
    for t in range(6, 12):
        d = gov.update(float(t), [Sample("power", float(t), POWER), Sample("thermal", float(t), THERMAL)])
    assert d.mode is not Mode.SAFE, d.reasons
    assert gov.latest["power"][0] == 11.0
