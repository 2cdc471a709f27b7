"""Mission time as the telemetry sees it (pure; the caller supplies wall-clock readings).

Under the plant simulator mission time (``Telemetry.t_s``) runs ``warp`` times faster than the wall
clock; in flight it runs at 1. The clock keeps the latest (t_s, wall) pair and a smoothed rate
estimate, so that ``now(wall)`` keeps advancing when telemetry stops: that is how the governor sees
telemetry go stale. Before any telemetry, mission time is wall time since start (rate 1). The
estimate never runs backwards.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MissionClock:
    """``observe(t_s, wall_s)`` on each sample; ``now(wall_s)`` estimates mission seconds."""

    start_wall_s: float
    rate: float = 1.0
    smoothing: float = 0.2
    min_rate: float = 0.01
    max_rate: float = 100_000.0
    _t_s: float | None = None
    _wall_s: float = 0.0
    _last_now: float = float("-inf")

    def observe(self, t_s: float, wall_s: float) -> None:
        if self._t_s is not None:
            dt_wall = wall_s - self._wall_s
            dt_mission = t_s - self._t_s
            if dt_wall > 1e-3 and dt_mission > 0:
                measured = min(max(dt_mission / dt_wall, self.min_rate), self.max_rate)
                self.rate += self.smoothing * (measured - self.rate)
            if t_s < self._t_s:
                return  # an old sample arriving late does not move time backwards
        self._t_s, self._wall_s = t_s, wall_s

    def now(self, wall_s: float) -> float:
        """Estimated mission seconds at ``wall_s``; never less than a value returned before (a sample
        that arrives late re-anchors the estimate, but time the governor has seen does not run back)."""
        anchored = self._t_s is not None
        estimate = (self._t_s or 0.0) + (wall_s - self._wall_s) * self.rate if anchored else wall_s - self.start_wall_s
        self._last_now = max(self._last_now, estimate)
        return self._last_now

    def mission_from_utc(self, utc: float, now_utc: float, wall_s: float) -> float:
        """The mission time at which UTC ``utc`` falls (for deadlines)."""
        return self.now(wall_s) + (utc - now_utc) * self.rate
