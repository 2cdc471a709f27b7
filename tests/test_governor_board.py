"""The governor uses the board's own telemetry (``board`` channel): firmware flags as limits of the
configured severity, the board's temperature standing in for ``thermal.board_c``, and the actuator
settings each mode asks for."""

from __future__ import annotations

import pytest

from flight.governor import Governor, GovernorConfig, Sample
from flight.governor.config import ActuatorPolicy, BoardInputs
from flight.governor.limits import BOARD_CEILING, BOARD_THROTTLED, BOARD_UNDER_VOLTAGE, LimitSeverity
from link.messages import Mode
from link.telemetry import BOARD, BOARD_C, TEMP_C, THROTTLED, UNDER_VOLTAGE
from tests.test_governor_modes import healthy


def config(**overrides: object) -> GovernorConfig:
    return GovernorConfig.model_validate({"telemetry_period_s": 1.0, "mode_min_dwell_s": 0.0,
                                          "safe_min_dwell_s": 0.0, **overrides})


def board(t: float, temp_c: float = 45.0, throttled: float = 0.0, under_voltage: float = 0.0) -> Sample:
    return Sample(BOARD, t, {TEMP_C: temp_c, THROTTLED: throttled, UNDER_VOLTAGE: under_voltage})


def settle(gov: Governor, t_end: float) -> float:
    t = 0.0
    while t <= t_end:
        gov.update(t, [*healthy(t), board(t)])
        t += 1.0
    return t


def test_a_throttled_board_throttles_the_governor_after_its_debounce_and_clears() -> None:
    gov = Governor(config())
    t = settle(gov, 10.0)
    assert gov.last is not None and gov.last.mode is Mode.NOMINAL
    d = gov.update(t, [*healthy(t), board(t, throttled=1.0)])
    assert d.mode is Mode.NOMINAL  # one sample: debounce 2
    d = gov.update(t + 1, [*healthy(t + 1), board(t + 1, throttled=1.0)])
    assert d.mode is Mode.THROTTLED and any(BOARD_THROTTLED in r for r in d.reasons)
    assert any(f"{BOARD_THROTTLED} tripped" in e for e in d.limit_events)
    for k in (2, 3):
        d = gov.update(t + k, [*healthy(t + k), board(t + k)])
    assert d.mode is Mode.NOMINAL


def test_under_voltage_as_a_hard_limit_goes_safe_and_preempts() -> None:
    gov = Governor(config(board_inputs=BoardInputs(under_voltage=LimitSeverity.HARD)))
    t = settle(gov, 10.0)
    for k in range(2):
        d = gov.update(t + k, [*healthy(t + k), board(t + k, under_voltage=1.0)])
    assert d.mode is Mode.SAFE and d.preempt and any(BOARD_UNDER_VOLTAGE in r for r in d.reasons)


def test_flags_are_ignored_when_configured_so() -> None:
    gov = Governor(config(board_inputs=BoardInputs(throttled=None, under_voltage=None)))
    t = settle(gov, 10.0)
    for k in range(5):
        d = gov.update(t + k, [*healthy(t + k), board(t + k, throttled=1.0, under_voltage=1.0)])
    assert d.mode is Mode.NOMINAL
    assert [lim.name for lim in gov.limits.limits if lim.channel == BOARD] == []


def test_board_temperature_stands_in_for_the_plants_board_sensor() -> None:
    gov = Governor(config(board_inputs=BoardInputs(temperature_as_board_c=True)))
    t = settle(gov, 10.0)
    # the plant says 95 °C (above the 85 °C ceiling), the board 45 °C: the board is believed
    for k in range(4):
        d = gov.update(t + k, [*healthy(t + k, board=95.0), board(t + k, temp_c=45.0)])
    assert d.mode is Mode.NOMINAL and BOARD_CEILING not in gov.limits.tripped()
    assert gov.latest["thermal"][1][BOARD_C] == 45.0
    # and the other way round: the board at 95 °C trips the ceiling although the plant reads 40 °C
    t += 4
    for k in range(3):
        d = gov.update(t + k, [*healthy(t + k, board=40.0), board(t + k, temp_c=95.0)])
    assert d.mode is Mode.SAFE and BOARD_CEILING in gov.limits.tripped()


def test_without_the_stand_in_the_plant_sensor_rules() -> None:
    gov = Governor(config())
    t = settle(gov, 10.0)
    for k in range(3):
        d = gov.update(t + k, [*healthy(t + k, board=40.0), board(t + k, temp_c=95.0)])
    assert d.mode is Mode.NOMINAL
    assert gov.latest["thermal"][1][BOARD_C] == 40.0


def test_a_board_only_governor_runs_on_the_board_channel_alone() -> None:
    """A board without a spacecraft around it (docs/boards.md's example configuration): the board
    channel is the required one, the board ceiling watches the board's temperature."""
    cfg = config(required_channels=[BOARD], limits=[lim for lim in GovernorConfig().limits
                                                    if lim.name == BOARD_CEILING],
                 board_inputs=BoardInputs(temperature_as_board_c=True))
    gov = Governor(cfg)
    assert gov.update(0.0, []).mode is Mode.SAFE  # nothing from the board yet
    for t in range(1, 4):
        d = gov.update(float(t), [board(float(t))])
    assert d.mode is Mode.NOMINAL and d.concurrency >= 1
    for t in range(4, 7):
        d = gov.update(float(t), [board(float(t), temp_c=90.0)])
    assert d.mode is Mode.SAFE
    d = gov.update(10.0, [])
    assert any("stale" in r for r in d.reasons)


@pytest.mark.parametrize(("mode_samples", "mode", "fraction", "power_mode"), [
    ("healthy", Mode.NOMINAL, 1.0, "MAXN"),
    ("throttled", Mode.THROTTLED, 0.4, "15W"),
    ("hot", Mode.SAFE, 0.0, "7W"),
])
def test_each_mode_asks_for_its_frequency_ceiling_and_power_mode(
        mode_samples: str, mode: Mode, fraction: float, power_mode: str) -> None:
    policy = ActuatorPolicy(frequency_ceiling=True, throttled_frequency_fraction=0.4,
                            power_modes={Mode.NOMINAL: "MAXN", Mode.THROTTLED: "15W", Mode.SAFE: "7W"})
    gov = Governor(config(actuators=policy))
    t = settle(gov, 10.0)
    for k in range(3):
        flags = {"throttled": 1.0} if mode_samples == "throttled" else {}
        hot = 95.0 if mode_samples == "hot" else 40.0
        d = gov.update(t + k, [*healthy(t + k, board=hot), board(t + k, **flags)])
    assert (d.mode, d.frequency_fraction, d.power_mode) == (mode, fraction, power_mode)


def test_actuators_are_not_steered_unless_configured() -> None:
    gov = Governor(config())
    settle(gov, 5.0)
    assert gov.last is not None
    assert (gov.last.frequency_fraction, gov.last.power_mode) == (None, None)


def test_power_modes_from_toml_like_configuration() -> None:
    cfg = GovernorConfig.model_validate({"actuators": {"power_modes": {"nominal": "MAXN", "safe": "7W"}}})
    assert cfg.actuators.power_modes == {Mode.NOMINAL: "MAXN", Mode.SAFE: "7W"}
