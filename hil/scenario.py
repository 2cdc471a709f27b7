"""Scenarios: TOML files in hil/scenarios/ that define a plant, its faults and its telemetry.

``load_scenario("nominal-550km")`` (or a path to a .toml file) -> :class:`Scenario`;
``scenario.build_plant()`` -> :class:`hil.plant.Plant`; ``list_scenarios()`` -> names.

Tables (units in the key names; see docs/plant.md for every key and the sizing rationale):
``[orbit]`` kind = "circular" (altitude_km, beta_deg, inclination_deg, phase_deg) or "tle" (line1,
line2, epoch_utc optional: a TOML offset date-time or an ISO 8601 string *with* its UTC offset, e.g.
``2024-06-20T12:00:00Z``; a local date-time without offset is refused, see :func:`_epoch`);
``[array]``; ``[battery]`` (+ initial_soc); ``[thermal]``; ``[loads]``;
``[board]``; ``[limits]`` (the fields of :class:`flight.governor.limits.Limits`: soc_floor,
battery_v_floor, board_max_c, radiator_max_c; what the governor is configured with and a run is
scored against; battery_v_floor defaults to 3.3 V per cell times the pack's ``series``);
``[[faults]]`` (kind, t_s, until_s and the kind's fields, see :mod:`hil.plant.faults`);
``[link]`` (the space link: ground stations, rates, delays, loss; :mod:`hil.link.config`, docs/hil.md;
the plant ignores it, ``hil sil --link`` uses it);
top level: name, description, telemetry_period_s, duration_s, solar_constant_w_m2.

A TLE orbit is checked when the scenario loads: its text column by column (:mod:`hil.plant.tle`:
the error names the line and column) and its propagation over the whole ``duration_s`` (the error
names the hour at which it decays), so a bad orbit never becomes a silent wrong plant run.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flight.governor.limits import CELL_V_FLOOR_V, Limits
from hil.link.config import LinkConfig, parse_link
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
    nominal duration (s), limits and its space link (None: the scenario declares no ``[link]``)."""

    name: str
    description: str
    config: PlantConfig
    faults: tuple[Fault, ...]
    telemetry_period_s: float
    duration_s: float
    limits: Limits
    path: Path | None = None
    link: LinkConfig | None = None

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


def _epoch(value: object) -> datetime | None:
    """``[orbit] epoch_utc``: an instant, so it must carry its UTC offset.

    Refused without one, rather than assumed UTC or local: TOML calls a date-time without offset a
    *local date-time* that "cannot be converted to an instant in time without additional information"
    (TOML v1.0.0, Local Date-Time), Python's ``astimezone`` would silently read it as this machine's
    local time, and a scenario must give the same orbit on every machine. Write ``...Z`` or ``+00:00``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"[orbit] epoch_utc {value!r} is not an ISO 8601 date-time ({exc})") from None
    if not isinstance(value, datetime):
        kind = "a date without a time" if isinstance(value, date) else type(value).__name__
        raise ValueError(f"[orbit] epoch_utc must be a date-time with its UTC offset, got {kind} ({value!r})")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"[orbit] epoch_utc {value.isoformat()} has no UTC offset, so it is not an instant (it "
                         f"would be read as this machine's local time): write {value.isoformat()}Z for UTC")
    return value


TLE_KEYS = ("line1", "line2", "epoch_utc")


def _orbit(table: dict[str, Any]) -> CircularOrbit | TleOrbit:
    t = dict(table)
    kind = t.pop("kind", "circular")
    if kind == "circular":
        orbit: CircularOrbit = _build(CircularOrbit, t, "[orbit]")
        return orbit
    if kind == "tle":
        unknown = set(t) - set(TLE_KEYS)
        missing = [k for k in ("line1", "line2") if k not in t]
        if unknown or missing:
            raise ValueError(f"[orbit] kind = 'tle': unknown keys {sorted(unknown)}, missing {missing} "
                             f"(keys: {', '.join(TLE_KEYS)})")
        return TleOrbit(t["line1"], t["line2"], _epoch(t.get("epoch_utc")))
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
    duration_s = float(doc.get("duration_s", 86400.0))
    config.orbit.check_span(duration_s)
    return Scenario(
        name=str(doc.get("name", path.stem if path else "scenario")),
        description=str(doc.get("description", "")),
        config=config,
        faults=faults,
        telemetry_period_s=float(doc.get("telemetry_period_s", 1.0)),
        duration_s=duration_s,
        limits=_build(Limits, {"battery_v_floor": CELL_V_FLOOR_V * battery.series, **doc.get("limits", {})},
                      "[limits]"),
        path=path,
        link=parse_link(doc["link"]) if "link" in doc else None,
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
