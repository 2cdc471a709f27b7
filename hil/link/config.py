"""The scenario's ``[link]`` table: ground stations, rates, delays and loss, and the plans built from it.

Layout (units in the key names, as in the rest of a scenario; docs/hil.md)::

    [link]
    epoch_utc = 2026-03-20T00:00:00Z   # circular orbits: UTC of mission t = 0 (TLE orbits keep their own)
    uplink_bit_s = 256_000             # ground -> satellite, bit/s of TCP payload (omit: unlimited)
    downlink_bit_s = 2_000_000         # satellite -> ground
    pass_delay_s = 0.010               # one-way delay through a ground station (light time + ground network)
    relay_delay_s = 0.050              # one-way delay in relay mode (laser-link constellation)
    scan_step_s = 10.0                 # contact-plan coarse scan step (shortest pass reliably found)

    [link.loss]                        # Gilbert-Elliott loss bursts within contacts (omit: none)
    bursts_per_hour = 6.0
    mean_burst_s = 2.0
    seed = 1

    [[link.stations]]
    name = "weilheim"
    latitude_deg = 47.88               # geodetic, WGS-84
    longitude_deg = 11.08              # east positive
    altitude_m = 600.0
    elevation_mask_deg = 5.0

The mode is chosen when the run starts (``hil sil --link passes|relay``), so one table serves both.
:func:`hil.scenario.parse_scenario` parses the table with :func:`parse_link` into ``Scenario.link``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from hil.link.contact import ContactPlan, relay_plan, station_passes
from hil.link.geometry import GroundStation
from hil.link.model import LinkParams, LossBursts
from hil.link.track import track_for
from hil.plant.orbit import CircularOrbit, TleOrbit

MODES = ("passes", "relay")


@dataclass(frozen=True)
class LossConfig:
    """Loss bursts: mean number per hour of mission time (those out of contact do nothing), mean
    duration (s) and the random seed."""

    bursts_per_hour: float = 0.0
    mean_burst_s: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bursts_per_hour < 0 or self.mean_burst_s <= 0:
            raise ValueError("[link.loss]: bursts_per_hour must be >= 0 and mean_burst_s > 0")

    def bursts(self, start_s: float, end_s: float) -> LossBursts:
        """The burst schedule over [start_s, end_s): mean gap 3600 / bursts_per_hour s."""
        gap = math.inf if self.bursts_per_hour == 0 else 3600.0 / self.bursts_per_hour
        return LossBursts.gilbert_elliott(gap, self.mean_burst_s, start_s, end_s, self.seed)


@dataclass(frozen=True)
class LinkConfig:
    """A parsed ``[link]`` table (see the module docstring for the keys and their units).

    Defaults: pass_delay_s 10 ms (the slant range to a 5 deg mask at 550 km is about 2,100 km, 7 ms of
    light time, plus the ground network); relay_delay_s 50 ms (a few laser hops across a LEO
    constellation and down to a gateway); no rate limit; no loss.
    """

    stations: tuple[GroundStation, ...] = ()
    epoch: datetime | None = None
    uplink_bit_s: float | None = None
    downlink_bit_s: float | None = None
    pass_delay_s: float = 0.010
    relay_delay_s: float = 0.050
    scan_step_s: float = 10.0
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        for key in ("uplink_bit_s", "downlink_bit_s"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ValueError(f"[link] {key} = {value}: must be > 0 (omit it for an unlimited rate)")
        if self.pass_delay_s < 0 or self.relay_delay_s < 0:
            raise ValueError("[link] delays must be >= 0")
        if self.scan_step_s <= 0:
            raise ValueError("[link] scan_step_s must be > 0")

    def params(self, start_s: float, end_s: float) -> LinkParams:
        """Rates in bytes/s and the loss bursts over [start_s, end_s)."""
        return LinkParams(
            up_bytes_s=None if self.uplink_bit_s is None else self.uplink_bit_s / 8.0,
            down_bytes_s=None if self.downlink_bit_s is None else self.downlink_bit_s / 8.0,
            loss=self.loss.bursts(start_s, end_s),
        )

    def plan(self, mode: str, orbit: CircularOrbit | TleOrbit, start_s: float, end_s: float) -> ContactPlan:
        """The contact plan over [start_s, end_s) in ``mode`` "passes" (the stations' passes) or "relay".

        Raises ValueError for an unknown mode, passes without stations, or a circular orbit without
        ``epoch_utc``.
        """
        if mode == "relay":
            return relay_plan(self.relay_delay_s, start_s, end_s)
        if mode != "passes":
            raise ValueError(f"unknown link mode {mode!r} (one of {', '.join(MODES)})")
        if not self.stations:
            raise ValueError("link mode 'passes' needs [[link.stations]] in the scenario")
        track = track_for(orbit, self.epoch)
        windows = station_passes(track, self.stations, start_s, end_s, self.scan_step_s)
        return ContactPlan(start_s, end_s, windows, self.pass_delay_s, mode="passes")


def _checked(table: dict[str, Any], known: set[str], where: str) -> dict[str, Any]:
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    return table


def _epoch(value: Any) -> datetime | None:
    """An instant: a date-time with its UTC offset (a local one would be read in this machine's zone)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"[link] epoch_utc {value!r} is not an ISO 8601 date-time") from None
    if not isinstance(value, datetime):
        raise ValueError(f"[link] epoch_utc must be a date-time, not {value!r}")
    if value.utcoffset() is None:
        raise ValueError(f"[link] epoch_utc {value.isoformat()} has no UTC offset: write {value.isoformat()}Z")
    return value


def parse_link(table: dict[str, Any]) -> LinkConfig:
    """A :class:`LinkConfig` from a ``[link]`` table; ValueError naming the key for bad input."""
    top = ({f.name for f in fields(LinkConfig)} - {"epoch"}) | {"epoch_utc"}
    t = dict(_checked(table, top, "[link]"))
    station_keys = {f.name for f in fields(GroundStation)}
    stations = tuple(
        GroundStation(**_checked(s, station_keys, f"[[link.stations]] #{i}"))
        for i, s in enumerate(t.pop("stations", []))
    )
    names = [s.name for s in stations]
    if len(set(names)) != len(names):
        raise ValueError(f"[[link.stations]]: duplicate names in {names}")
    loss = LossConfig(**_checked(t.pop("loss", {}), {f.name for f in fields(LossConfig)}, "[link.loss]"))
    epoch = _epoch(t.pop("epoch_utc", None))
    return LinkConfig(stations=stations, epoch=epoch, loss=loss, **t)
