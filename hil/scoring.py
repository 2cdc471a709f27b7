"""Scoring a run against the spacecraft's limits: one test, one set of names, one way of counting
seconds, for the policy simulator (:func:`hil.governor_sim.run_policy`, ``bench.governor``) and the
SIL report (:func:`hil.sil.report_from_archive`), so a bench figure and a SIL report mean the same.

A run is telemetry: samples of a channel's values, each standing for ``duration_s`` of mission
time (the simulator's step; in an archive, the time until the channel's next sample). A sample
breaks a limit when the governor's watchpoint for it fails
(:meth:`flight.governor.limits.LimitConfig.failing` over :meth:`flight.governor.limits.Limits.configs`:
``soc_floor``, ``battery_v_floor``, ``board_ceiling``, ``radiator_ceiling``), or, named
``brownout``, when the power system could not serve the load (``power.unserved_w > 0``). A value
absent from a sample breaks nothing.

- ``by_limit[name]``: seconds in which that limit was broken;
- ``violation_s``: seconds in which any limit was broken (the union over limits and channels: an
  instant breaking two limits counts once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from flight.governor.limits import LimitConfig, LimitKind, Limits
from link.telemetry import POWER, UNSERVED_W

BROWNOUT = "brownout"
"""Scoring-only limit: load the power system could not serve (the plant's brownout)."""

BROWNOUT_LIMIT = LimitConfig(name=BROWNOUT, channel=POWER, key=UNSERVED_W, kind=LimitKind.CEILING,
                             threshold=0.0, hysteresis=1.0, debounce=1)
"""``power.unserved_w`` above 0 W (hysteresis and debounce are unused in scoring)."""


def scored_limits(limits: Limits) -> list[LimitConfig]:
    """What a run is scored against, in report order: the governor's limits, then ``brownout``."""
    return [*limits.configs(), BROWNOUT_LIMIT]


class TimedSample(Protocol):
    @property
    def t_s(self) -> float: ...


S = TypeVar("S", bound=TimedSample)


def sample_durations(samples: Sequence[S]) -> list[tuple[S, float]]:
    """Each sample (sorted by ``t_s``) with the time it stands for, s: until the next sample; the
    last one, the interval before it (one telemetry period), or 1 s when it is alone."""
    out = []
    for i, s in enumerate(samples):
        nxt = samples[i + 1].t_s if i + 1 < len(samples) else s.t_s + (s.t_s - samples[i - 1].t_s if i else 1.0)
        out.append((s, max(0.0, nxt - s.t_s)))
    return out


def union_s(spans: Sequence[tuple[float, float]]) -> float:
    """Length (s) of the union of the ``[start, start + duration)`` spans. Disjoint spans add their
    durations exactly, so back-to-back steps sum as a plain count of steps would."""
    total, end = 0.0, -math.inf
    for start, duration in sorted(spans):
        stop = start + duration
        if start >= end:
            total += duration
        elif stop > end:
            total += stop - end
        end = max(end, stop)
    return total


class ViolationTally:
    """Seconds each limit is broken over a run, and seconds any is (see the module docstring)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = scored_limits(limits)
        self.by_limit: dict[str, float] = {}
        """Seconds per limit broken at least once, in the order they were first broken."""
        self._spans: list[tuple[float, float]] = []

    @property
    def channels(self) -> list[str]:
        """The channels a limit watches (feed these to :meth:`observe`)."""
        return list(dict.fromkeys(lim.channel for lim in self.limits))

    def broken(self, channels: Mapping[str, Mapping[str, float]]) -> list[str]:
        """Names of the limits broken by one instant's ``channel -> values``, in report order."""
        out = []
        for lim in self.limits:
            values = channels.get(lim.channel)
            if values is not None and lim.key in values and lim.failing(float(values[lim.key])):
                out.append(lim.name)
        return out

    def observe(self, t_s: float, duration_s: float, channels: Mapping[str, Mapping[str, float]]) -> list[str]:
        """Score the values of one or more channels standing for ``[t_s, t_s + duration_s)``;
        returns the names of the limits they break."""
        names = self.broken(channels)
        for name in names:
            self.by_limit[name] = self.by_limit.get(name, 0.0) + duration_s
        if names:
            self._spans.append((t_s, duration_s))
        return names

    @property
    def violation_s(self) -> float:
        """Seconds with any limit broken."""
        return union_s(self._spans)

    def seconds(self) -> dict[str, float]:
        """Seconds per scored limit, every limit present (0.0 when never broken), in report order."""
        return {lim.name: self.by_limit.get(lim.name, 0.0) for lim in self.limits}
