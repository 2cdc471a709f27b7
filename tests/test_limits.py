"""One limits model: the governor's configuration, the scenarios, the simulator and the SIL read the
same :class:`flight.governor.limits.Limits`; expected figures come from the plant's design
(docs/plant.md: 4S pack, 85 °C board, 70 °C radiator) and physics.md (3.3 V per NMC cell)."""

from __future__ import annotations

import tomllib

import pytest

from flight.governor.config import GovernorConfig
from flight.governor.limits import LimitKind, Limits
from hil.governor_sim import governor_config_for
from hil.scenario import SCENARIO_DIR, list_scenarios, load_scenario, parse_scenario


def test_defaults_are_the_plant_design() -> None:
    lim = Limits()
    assert (lim.soc_floor, lim.board_max_c, lim.radiator_max_c) == (0.30, 85.0, 70.0)
    assert lim.battery_v_floor == pytest.approx(4 * 3.3)


def test_governor_default_configuration_is_the_limits_model() -> None:
    by_name = {c.name: c for c in GovernorConfig().limits}
    assert list(by_name) == ["soc_floor", "battery_v_floor", "board_ceiling", "radiator_ceiling"]
    assert by_name["soc_floor"].threshold == 0.30 and by_name["soc_floor"].kind is LimitKind.FLOOR
    assert by_name["battery_v_floor"].threshold == pytest.approx(13.2)
    assert by_name["board_ceiling"].threshold == 85.0 and by_name["board_ceiling"].kind is LimitKind.CEILING
    assert by_name["radiator_ceiling"].threshold == 70.0
    assert (by_name["radiator_ceiling"].channel, by_name["radiator_ceiling"].key) == ("thermal", "radiator_c")


@pytest.mark.parametrize("name", list_scenarios())
def test_every_scenario_carries_the_full_limits_model(name: str) -> None:
    sc = load_scenario(name)
    assert isinstance(sc.limits, Limits)
    assert sc.limits.battery_v_floor == pytest.approx(3.3 * sc.config.battery.series)
    # the governor a simulation or the SIL configures acts on exactly the scored thresholds
    cfg = governor_config_for(sc.build_plant(), sc.limits, 10.0)
    assert cfg.limits == sc.limits.configs()


def _doc_with(limits: dict[str, object], series: int = 4) -> dict[str, object]:
    with (SCENARIO_DIR / "nominal-550km.toml").open("rb") as fh:
        doc = tomllib.load(fh)
    doc["limits"] = limits
    doc["battery"]["series"] = series
    return doc


def test_scenario_limits_override_and_pack_voltage_floor() -> None:
    sc = parse_scenario(_doc_with({"radiator_max_c": 60.0}, series=6))
    assert sc.limits.radiator_max_c == 60.0 and sc.limits.board_max_c == 85.0
    assert sc.limits.battery_v_floor == pytest.approx(6 * 3.3)
    sc = parse_scenario(_doc_with({"battery_v_floor": 12.0}))
    assert sc.limits.battery_v_floor == 12.0


def test_bad_limits_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"\[limits\]: unknown keys \['board_ceiling_c'\]"):
        parse_scenario(_doc_with({"board_ceiling_c": 80.0}))
    with pytest.raises(ValueError, match=r"soc_floor 30\.0 is not a fraction"):
        parse_scenario(_doc_with({"soc_floor": 30.0}))
