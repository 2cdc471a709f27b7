"""A job's energy from the board's measured power: E = integral of (P - P_idle) dt over its run.

The method is the one for energy per inference in /work/shared/reference/boards-and-runtime.md
("Energy per inference: E = integral of (P - P_idle) dt / N, polling the hwmon files directly").
Where the board measures its power (Jetson INA3221, Raspberry Pi 5 PMIC, RAPL; flight/board),
flightd feeds every power reading here with the number of jobs running at that instant, and tells
when each job starts and finishes; :meth:`JobEnergyMeter.finish` returns the job's energy above
idle, which replaces the core-seconds estimate in the governor's cost model
(:meth:`flight.governor.costs.CostModel.observe`). Pure: no clock, no I/O; times are the caller's
(flightd: its monotonic clock, s).

- Power between two readings is interpolated linearly, and held flat before the first and after
  the last reading. flightd reads the power when a job starts and when it finishes, and every
  ``board.energy_period_s`` while one runs, so a job's interval has readings at both ends.
- Jobs that run at the same time share the power above idle equally, instant by instant.
- ``P_idle``: the configured idle power when given (``board.idle_w``), else learnt from readings
  taken while no job ran and none had run since the previous reading (a sensor that averages, like
  the INA3221, still shows the last job's power just after it ends): an exponential moving average,
  the first such reading taken as is. Until one is seen, ``fallback_idle_w`` (the governor's board
  profile). An energy below zero (noise around idle) is reported as 0.
- Meaningful for jobs much longer than the sensor's own averaging window and the reading period;
  for a job shorter than those it is the power of the window it falls in, times the job's time.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class PowerReading:
    """Board power ``power_w`` (W) at ``t_s`` (s), with ``running`` jobs running at that instant."""

    t_s: float
    power_w: float
    running: int


class JobEnergyMeter:
    """Energy above idle (J) of each job from the board's power readings (see the module docstring)."""

    def __init__(self, fallback_idle_w: float, idle_w: float | None = None, idle_alpha: float = 0.1) -> None:
        if not 0.0 < idle_alpha <= 1.0:
            raise ValueError("idle_alpha must lie in (0, 1]")
        if fallback_idle_w < 0.0 or (idle_w is not None and idle_w < 0.0):
            raise ValueError("idle power cannot be negative")
        self.fixed_idle_w = idle_w
        self.learnt_idle_w: float | None = None
        self.fallback_idle_w = fallback_idle_w
        self.idle_alpha = idle_alpha
        self._readings: list[PowerReading] = []
        self._times: list[float] = []
        self._jobs: dict[str, tuple[float, float | None]] = {}
        self._ran_since_reading = False

    @property
    def idle_w(self) -> float:
        """P_idle (W): configured, else learnt, else the fallback."""
        if self.fixed_idle_w is not None:
            return self.fixed_idle_w
        return self.learnt_idle_w if self.learnt_idle_w is not None else self.fallback_idle_w

    @property
    def idle_source(self) -> str:
        if self.fixed_idle_w is not None:
            return "configured"
        return "measured" if self.learnt_idle_w is not None else "board profile"

    def observe(self, t_s: float, power_w: float, running: int) -> None:
        """One power reading; ``running``: jobs running at ``t_s``. Readings may arrive out of order."""
        reading = PowerReading(t_s, power_w, running)
        previous = self._readings[-1] if self._readings else None
        quiet = running == 0 and not self._ran_since_reading
        if quiet and previous is not None and previous.running == 0 and previous.t_s < t_s:
            self._learn_idle(power_w)
        self._ran_since_reading = running > 0
        i = bisect.bisect_right(self._times, t_s)
        self._readings.insert(i, reading)
        self._times.insert(i, t_s)
        self._forget()

    def _learn_idle(self, power_w: float) -> None:
        if self.learnt_idle_w is None:
            self.learnt_idle_w = power_w
        else:
            self.learnt_idle_w += self.idle_alpha * (power_w - self.learnt_idle_w)

    def start(self, job_id: str, t_s: float) -> None:
        """``job_id`` started at ``t_s``."""
        self._jobs[job_id] = (t_s, None)
        self._ran_since_reading = True

    def finish(self, job_id: str, t_s: float) -> float | None:
        """``job_id`` finished at ``t_s``: its energy above idle (J, >= 0), or None when it was never
        started here or no power reading exists at all."""
        span = self._jobs.get(job_id)
        if span is None:
            return None
        start = span[0]
        self._jobs[job_id] = (start, t_s)
        if not self._readings:
            self._forget()
            return None
        energy = self._share(start, t_s)
        self._forget()
        return max(0.0, energy)

    def _power(self, t: float) -> float:
        """Interpolated power (W) at ``t``."""
        readings, times = self._readings, self._times
        i = bisect.bisect_right(times, t)
        if i == 0:
            return readings[0].power_w
        if i == len(readings):
            return readings[-1].power_w
        a, b = readings[i - 1], readings[i]
        if b.t_s == a.t_s:
            return b.power_w
        return a.power_w + (b.power_w - a.power_w) * (t - a.t_s) / (b.t_s - a.t_s)

    def _share(self, start: float, end: float) -> float:
        """This job's share of the integral of (P - P_idle) over [start, end] (J)."""
        if end <= start:
            return 0.0
        cuts = {start, end}
        cuts.update(t for t in self._times if start < t < end)
        for a, b in self._jobs.values():
            for t in (a, b):
                if t is not None and start < t < end:
                    cuts.add(t)
        points = sorted(cuts)
        idle = self.idle_w
        total = 0.0
        for t0, t1 in itertools.pairwise(points):
            mid = 0.5 * (t0 + t1)
            sharing = sum(1 for a, b in self._jobs.values() if a <= mid and (b is None or mid < b))
            mean_w = 0.5 * (self._power(t0) + self._power(t1))  # exact: P is linear between cuts
            total += (mean_w - idle) * (t1 - t0) / max(1, sharing)
        return total

    def _forget(self) -> None:
        """Drop finished jobs no running job overlaps, and readings older than any job still needs
        (keeping the last one before, for interpolation)."""
        open_starts = [a for a, b in self._jobs.values() if b is None]
        horizon = min(open_starts) if open_starts else None
        for job_id, (_, b) in list(self._jobs.items()):
            if b is not None and (horizon is None or b < horizon):
                del self._jobs[job_id]
        keep_from = horizon if horizon is not None else (self._times[-1] if self._times else None)
        if keep_from is None:
            return
        i = max(0, bisect.bisect_right(self._times, keep_from) - 1)
        if i:
            del self._readings[:i], self._times[:i]
