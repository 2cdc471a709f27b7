"""Contact plans: when the satellite can talk to the ground, and with what one-way delay.

Pure: an orbit track and ground stations in, windows out; no clock, no I/O.

:func:`station_passes` finds, for each station, the intervals in which the satellite is above the
station's elevation mask: a vectorised coarse scan (every ``step_s``) finds the samples on either side
of each crossing, then all crossings are refined together by bisection to ``tolerance_s``, and each
pass's highest elevation by a golden-section search around its highest sample. A pass shorter than
``step_s`` can fall between two samples and be missed (at 550 km and a 10 deg mask a pass that short
peaks within a fraction of a degree of the mask). A window already open at ``start_s`` starts there;
one still open at ``end_s`` ends there.

:class:`ContactPlan` holds the windows and answers what the link emulator asks: in contact at t? next
acquisition or loss of signal after t? Windows of different stations that overlap merge into one
contact (the ground network hands over without a break). :func:`relay_plan` is the inter-satellite
relay mode: continuous contact with a fixed latency.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hil.link.geometry import GroundStation
from hil.link.track import EarthTrack, ecef_km

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class ContactWindow:
    """One station's view of the satellite: acquisition (``aos_s``) and loss of signal (``los_s``) in
    mission seconds, the highest elevation (deg) and when it occurs (s). A relay window has
    ``max_elevation_deg`` None."""

    station: str
    aos_s: float
    los_s: float
    max_elevation_deg: float | None = None
    t_max_elevation_s: float | None = None

    @property
    def duration_s(self) -> float:
        return self.los_s - self.aos_s


@dataclass(frozen=True)
class ContactPlan:
    """Windows over the span [start_s, end_s) (mission s) and the link's one-way delay (s).

    Outside the span there is no contact. ``contacts`` are the merged intervals of all windows,
    sorted; ``mode`` is "passes" or "relay".
    """

    start_s: float
    end_s: float
    windows: tuple[ContactWindow, ...]
    one_way_delay_s: float
    mode: str = "passes"
    contacts: tuple[tuple[float, float], ...] = field(init=False)
    _starts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError(f"contact plan span [{self.start_s}, {self.end_s}) is empty")
        if self.one_way_delay_s < 0:
            raise ValueError(f"one-way delay {self.one_way_delay_s} s is negative")
        contacts = merge_windows(self.windows, self.start_s, self.end_s)
        object.__setattr__(self, "contacts", contacts)
        object.__setattr__(self, "_starts", tuple(a for a, _ in contacts))

    def contact_index(self, t_s: float) -> int | None:
        """Index in ``contacts`` of the contact holding mission time ``t_s``, or None out of contact."""
        i = bisect.bisect_right(self._starts, t_s) - 1
        if i >= 0 and t_s < self.contacts[i][1]:
            return i
        return None

    def in_contact(self, t_s: float) -> bool:
        return self.contact_index(t_s) is not None

    def next_change(self, t_s: float) -> float | None:
        """The first acquisition or loss of signal strictly after ``t_s``, or None if nothing changes."""
        i = self.contact_index(t_s)
        if i is not None:
            end = self.contacts[i][1]
            return end if math.isfinite(end) else None
        j = bisect.bisect_right(self._starts, t_s)
        return self.contacts[j][0] if j < len(self.contacts) else None

    def contact_s(self) -> float:
        """Total time in contact within the span, s."""
        return sum(b - a for a, b in self.contacts)

    def contact_s_between(self, t0_s: float, t1_s: float) -> float:
        """Time in contact within [t0_s, t1_s), s (0 for an empty interval)."""
        return sum(max(0.0, min(b, t1_s) - max(a, t0_s)) for a, b in self.contacts)

    def first_contact_from(self, t_s: float) -> int | None:
        """Index of the contact holding ``t_s``, else of the next one; None when no contact is left."""
        i = self.contact_index(t_s)
        if i is not None:
            return i
        j = bisect.bisect_right(self._starts, t_s)
        return j if j < len(self.contacts) else None

    def stations_of(self, index: int) -> tuple[str, ...]:
        """Names of the stations whose windows make up contact ``index``, in order of acquisition."""
        a, b = self.contacts[index]
        return tuple(dict.fromkeys(w.station for w in self.windows if w.aos_s < b and w.los_s > a))


def merge_windows(windows: Sequence[ContactWindow], start_s: float, end_s: float) -> tuple[tuple[float, float], ...]:
    """Union of the windows' [aos, los) intervals clipped to [start_s, end_s), sorted; touching
    intervals merge."""
    spans = sorted((max(w.aos_s, start_s), min(w.los_s, end_s)) for w in windows)
    out: list[list[float]] = []
    for a, b in spans:
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def relay_plan(one_way_delay_s: float, start_s: float = 0.0, end_s: float = math.inf) -> ContactPlan:
    """Relay mode (an inter-satellite laser-link constellation): continuous contact over the span with
    a fixed one-way delay."""
    return ContactPlan(start_s, end_s, (ContactWindow("relay", start_s, end_s),), one_way_delay_s, mode="relay")


def station_passes(
    track: EarthTrack,
    stations: Sequence[GroundStation],
    start_s: float,
    end_s: float,
    step_s: float = 10.0,
    tolerance_s: float = 0.5,
) -> tuple[ContactWindow, ...]:
    """Every pass of ``track`` over each station within [start_s, end_s), sorted by acquisition.

    AOS and LOS are within ``tolerance_s`` of the true crossing of the elevation mask (bisection);
    ``max_elevation_deg`` is the highest elevation found by golden-section search to ``tolerance_s``.
    Raises ValueError for an empty span, a non-positive step or tolerance, or duplicate station names.
    """
    if end_s <= start_s:
        raise ValueError(f"span [{start_s}, {end_s}) is empty")
    if step_s <= 0 or tolerance_s <= 0:
        raise ValueError("step_s and tolerance_s must be > 0")
    names = [s.name for s in stations]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate station names in {names}")
    n = math.ceil((end_s - start_s) / step_s)
    t = np.minimum(start_s + step_s * np.arange(n + 1, dtype=np.float64), end_s)
    r = ecef_km(track, t)
    windows: list[ContactWindow] = []
    for station in stations:
        windows.extend(_passes_of(track, station, t, station.elevation_deg(r), tolerance_s))
    return tuple(sorted(windows, key=lambda w: (w.aos_s, w.station)))


def _passes_of(
    track: EarthTrack, station: GroundStation, t: FloatArray, el: FloatArray, tolerance_s: float
) -> list[ContactWindow]:
    above = el > station.elevation_mask_deg
    change = np.flatnonzero(above[1:] != above[:-1])
    crossings = _bisect_crossings(track, station, t[change], t[change + 1], above[change], tolerance_s)
    edges = [float(t[0])] if above[0] else []
    edges.extend(float(c) for c in crossings)
    if above[-1]:
        edges.append(float(t[-1]))
    spans = list(zip(edges[::2], edges[1::2], strict=True))
    if not spans:
        return []
    peaks_t, peaks_el = _peaks(track, station, t, el, spans, tolerance_s)
    return [
        ContactWindow(station.name, a, b, float(e), float(tp))
        for (a, b), tp, e in zip(spans, peaks_t, peaks_el, strict=True)
    ]


def _elevation(track: EarthTrack, station: GroundStation, t: FloatArray) -> FloatArray:
    return station.elevation_deg(ecef_km(track, t))


def _bisect_crossings(
    track: EarthTrack, station: GroundStation, lo: FloatArray, hi: FloatArray, above_lo: BoolArray, tol: float
) -> FloatArray:
    """Crossing times of the mask in each bracket [lo, hi] (the sides disagree), all refined at once."""
    lo, hi = lo.copy(), hi.copy()
    if lo.size == 0:
        return lo
    while float(np.max(hi - lo)) > tol:
        mid = 0.5 * (lo + hi)
        above_mid = _elevation(track, station, mid) > station.elevation_mask_deg
        same = above_mid == above_lo
        lo = np.where(same, mid, lo)
        hi = np.where(same, hi, mid)
    return 0.5 * (lo + hi)


def _peaks(
    track: EarthTrack,
    station: GroundStation,
    t: FloatArray,
    el: FloatArray,
    spans: list[tuple[float, float]],
    tol: float,
) -> tuple[FloatArray, FloatArray]:
    """Time and value of the highest elevation in each span: golden-section search, all spans at once,
    over one coarse step either side of the highest sample (the elevation is unimodal in a pass)."""
    step = float(t[1] - t[0]) if t.size > 1 else tol
    lo, hi = np.empty(len(spans)), np.empty(len(spans))
    for k, (a, b) in enumerate(spans):
        inside = (t >= a) & (t <= b)
        t_best = float(t[inside][np.argmax(el[inside])]) if inside.any() else 0.5 * (a + b)
        lo[k], hi[k] = max(a, t_best - step), min(b, t_best + step)
    x1, x2 = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    f1, f2 = _elevation(track, station, x1), _elevation(track, station, x2)
    while float(np.max(hi - lo)) > tol:
        left = f1 >= f2  # the maximum lies in [lo, x2], else in [x1, hi]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        x1_next = np.where(left, hi - GOLDEN * (hi - lo), x2)
        x2_next = np.where(left, x1, lo + GOLDEN * (hi - lo))
        f_probe = _elevation(track, station, np.where(left, x1_next, x2_next))
        f1, f2 = np.where(left, f_probe, f2), np.where(left, f1, f_probe)
        x1, x2 = x1_next, x2_next
    t_peak = 0.5 * (lo + hi)
    return t_peak, _elevation(track, station, t_peak)
