"""Scenarios: TOML files in hil/scenarios/ that define a plant, its faults and its telemetry.

``load_scenario("nominal-550km")`` (or a path to a .toml file) -> :class:`Scenario`;
``scenario.build_plant()`` -> :class:`hil.plant.Plant`; ``list_scenarios()`` -> names.

Tables (units in the key names; see docs/plant.md for every key and the sizing rationale):
``[orbit]`` kind = "circular" (altitude_km, beta_deg, inclination_deg, phase_deg) or "tle" (line1,
line2, epoch_utc optional); ``[array]``; ``[battery]`` (+ initial_soc); ``[thermal]``; ``[loads]``;
``[board]``; ``[limits]`` (the fields of :class:`flight.governor.limits.Limits`: soc_floor,
battery_v_floor, board_max_c, radiator_max_c; what the governor is configured with and a run is
scored against; battery_v_floor defaults to 3.3 V per cell times the pack's ``series``);
``[[faults]]`` (kind, t_s, until_s and the kind's fields, see :mod:`hil.plant.faults`);
top level: name, description, telemetry_period_s, duration_s, solar_constant_w_m2.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from flight.governor.limits import CELL_V_FLOOR_V, Limits
from hil.plant.battery import BatteryParams
from hil.plant.faults import Fault, FaultSchedule
from hil.plant.loads import BoardProfile, LoadModel
from hil.plant.orbit import CircularOrbit, TleOrbit
from hil.plant.plant import Plant, PlantConfig
from hil.plant.solar import SolarArray
from hil.plant.thermal import ThermalParams

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario: the plant's configuration, its faults, telemetry period (simulated s),
    nominal duration (s) and limits."""

    name: str
    description: str
    config: PlantConfig
    faults: tuple[Fault, ...]
    telemetry_period_s: float
    duration_s: float
    limits: Limits
    path: Path | None = None

    def build_plant(self, t0_s: float = 0.0) -> Plant:
        return Plant(self.config, FaultSchedule(self.faults), t0_s)


def list_scenarios() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def _build(cls: type[Any], table: dict[str, Any], where: str, skip: tuple[str, ...] = ()) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(table) - names - set(skip)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(names)})")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in table.items() if k in names}
    return cls(**kwargs)


def _orbit(table: dict[str, Any]) -> CircularOrbit | TleOrbit:
    t = dict(table)
    kind = t.pop("kind", "circular")
    if kind == "circular":
        orbit: CircularOrbit = _build(CircularOrbit, t, "[orbit]")
        return orbit
    if kind == "tle":
        epoch = t.get("epoch_utc")
        when = datetime.fromisoformat(epoch) if isinstance(epoch, str) else epoch
        return TleOrbit(t["line1"], t["line2"], when)
    raise ValueError(f"[orbit]: unknown kind {kind!r} (circular or tle)")


def parse_scenario(doc: dict[str, Any], path: Path | None = None) -> Scenario:
    """A scenario from a parsed TOML document."""
    battery_table = dict(doc.get("battery", {}))
    initial_soc = float(battery_table.pop("initial_soc", 0.9))
    battery: BatteryParams = _build(BatteryParams, battery_table, "[battery]")
    config = PlantConfig(
        orbit=_orbit(doc["orbit"]),
        array=_build(SolarArray, doc["array"], "[array]"),
        battery=battery,
        thermal=_build(ThermalParams, doc.get("thermal", {}), "[thermal]"),
        loads=_build(LoadModel, doc.get("loads", {}), "[loads]"),
        board=_build(BoardProfile, doc.get("board", {}), "[board]"),
        initial_soc=initial_soc,
        solar_constant_w_m2=float(doc.get("solar_constant_w_m2", 1361.0)),
    )
    faults = tuple(_build(Fault, f, f"[[faults]] #{i}") for i, f in enumerate(doc.get("faults", [])))
    return Scenario(
        name=str(doc.get("name", path.stem if path else "scenario")),
        description=str(doc.get("description", "")),
        config=config,
        faults=faults,
        telemetry_period_s=float(doc.get("telemetry_period_s", 1.0)),
        duration_s=float(doc.get("duration_s", 86400.0)),
        limits=_build(Limits, {"battery_v_floor": CELL_V_FLOOR_V * battery.series, **doc.get("limits", {})},
                      "[limits]"),
        path=path,
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A bundled scenario by name (``nominal-550km``) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise FileNotFoundError(f"no scenario {name_or_path!r} (bundled: {', '.join(list_scenarios())})")
    with path.open("rb") as fh:
        return parse_scenario(tomllib.load(fh), path)
