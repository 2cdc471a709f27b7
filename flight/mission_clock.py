"""Mission time as the governor sees it (pure; the caller supplies monotonic wall-clock readings).

Two sources, one rule each:

- **In flight** (no time tone): mission time is the latest telemetry sample's ``t_s`` plus the wall
  time since it arrived, at ``rate`` = 1 (mission time *is* time). ``now`` keeps advancing when
  telemetry stops: that is how the governor sees telemetry go stale. Before any telemetry, mission
  time is wall time since start.
- **Under a simulator** (time tones on the ``clock`` channel, see docs/sil.md): the plant owns
  simulated time, and mission time is the ``t_s`` of the latest tone, never extrapolated. A host too
  busy to deliver the plant's output on time stops flightd's time together with the plant's, so
  lateness can never read as stale telemetry; a dropout the scenario injects (samples withheld, tones
  kept) still does, after exactly the same simulated time as in flight. If no tone arrives for
  ``tone_timeout_s`` of wall time (the simulator is gone), the clock flywheels on from the last tone
  at the tone's declared rate, so silent telemetry still ends in SAFE: the tone-and-flywheel scheme of
  cFS Time Services (clients follow the "time at the tone" and flywheel on their local clock when the
  tone is lost; nasa/cFE modules/time/fsw/src/cfe_time_tone.c).

A second timebase, :meth:`MissionClock.elapsed`, is what relative delays count on (job sequences,
``flight.sequences``): time that passes, which a jump or correction of mission time does not move.
In flight it is the monotonic clock (``wall_s``; CLOCK_MONOTONIC runs on across a flightd restart on
the same boot). Under a simulator it is the tone's ``met_s``, the simulator's mission elapsed time:
the time tone of cFE TIME carries the same pair, the MET (a counter nothing corrects) and the STCF
that turns it into spacecraft time, which the ground adjusts (``CFE_TIME_ToneDataCmd_t``: AtToneMET,
AtToneSTCF; nasa/cFE cfe_time_msg.h). A simulated clock fault jumps ``t_s`` and leaves ``met_s``
alone, exactly as a time correction onboard moves the STCF and never the MET. Wall time times the
warp would not do: under lock-step the simulator's pace is not the warp (it waits for a slow host).

A sample from the future: in flight, one sample whose ``t_s`` is more than
:data:`FUTURE_TOLERANCE_S` ahead of mission time does not move the clock (:meth:`MissionClock.observe`
says so, and flightd refuses the sample); a second one agreeing with it (a real time correction, or a
source restarted on a new epoch) does. One plausible-but-wrong time would otherwise run mission time
ahead and make every good sample after it look stale (issue 10 item 1, found by the fuzzing campaign).

Earlier versions estimated the warp from the spacing of samples; a burst of samples delivered
together after a stall measured a rate of thousands and ran mission time ahead of everything
delivered (the spurious stale-telemetry SAFEs of issue 10 item 8). Nothing is estimated now: the rate
is 1, or what the tone declares. ``now`` never runs backwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TONE_TIMEOUT_S = 5.0
"""Wall seconds without a tone after which the clock flywheels (issue 10 item 8: long enough that a
busy 2-core host never reaches it while the simulator runs, ~10x the worst stall seen in a SIL run
(0.6 s); short enough that a dead simulator ends in SAFE within seconds)."""

FUTURE_TOLERANCE_S = 10.0
"""Mission seconds a sample may lie ahead of the clock in flight before it needs a second sample to
confirm the jump: transport delay and a source's clock drift are well under this (samples come every
``telemetry_period_s``, 1 s by default); a wrong epoch or a corrupted time is far over it."""


@dataclass
class MissionClock:
    """``observe(t_s, wall_s)`` on each telemetry sample, ``tone(t_s, wall_s, rate)`` on each time tone;
    ``now(wall_s)`` is mission seconds. ``rate``: mission seconds per wall second in flight (1)."""

    start_wall_s: float
    rate: float = 1.0
    tone_timeout_s: float = TONE_TIMEOUT_S
    _t_s: float | None = None
    _wall_s: float = 0.0
    _tone_t_s: float | None = None
    _tone_wall_s: float = 0.0
    _tone_rate: float = 1.0
    _tone_met_s: float | None = None
    _last_now: float = float("-inf")
    _last_elapsed: float = float("-inf")
    _ahead: tuple[float, float] | None = None
    future_tolerance_s: float = FUTURE_TOLERANCE_S

    def observe(self, t_s: float, wall_s: float) -> bool:
        """A telemetry sample stamped ``t_s`` arrived at ``wall_s``; an older one than the latest does
        not move the anchor back. In flight (no tone), a sample more than ``future_tolerance_s`` ahead
        of :meth:`now` moves nothing unless the previous such sample agrees with it (within the
        tolerance, counting the wall time between them); returns False for a sample from the future
        that is not (yet) confirmed, True otherwise."""
        if not math.isfinite(t_s):
            return True
        ahead_of = max(self._last_now, self._estimate(wall_s))  # as now(), without latching it
        if self._t_s is not None and not self.toned and t_s > ahead_of + self.future_tolerance_s:
            candidate, self._ahead = self._ahead, (t_s, wall_s)
            confirms = candidate is not None and abs(
                candidate[0] + (wall_s - candidate[1]) * self.rate - t_s) <= self.future_tolerance_s
            if not confirms:
                return False
        self._ahead = None
        if self._t_s is None or t_s >= self._t_s:
            self._t_s, self._wall_s = t_s, wall_s
        return True

    def tone(self, t_s: float, wall_s: float, rate: float | None = None, met_s: float | None = None) -> None:
        """A time tone from a simulator: mission time is ``t_s`` from now on; ``rate`` (mission s per
        wall s, > 0) is what the flywheel and deadline conversion use; ``met_s`` is the simulator's
        mission elapsed time at the tone, which :meth:`elapsed` follows (None or not finite: a
        simulator that does not send it; ``t_s`` stands in). A tone older than the latest (out of
        order: an earlier MET) is ignored; a rate that is not a positive number keeps the previous
        one. A tone whose ``t_s`` is below the latest (mission time set back, the MET moving on)
        holds :meth:`now` until mission time passes the value it had (it never runs backwards)."""
        if not math.isfinite(t_s):
            return
        met = met_s if met_s is not None and math.isfinite(met_s) else t_s
        if self._tone_met_s is not None and met < self._tone_met_s:
            return
        self._tone_t_s, self._tone_wall_s, self._tone_met_s = t_s, wall_s, met
        if rate is not None and math.isfinite(rate) and rate > 0:
            self._tone_rate = rate

    @property
    def toned(self) -> bool:
        """True once a simulator's time tone has been received."""
        return self._tone_t_s is not None

    def current_rate(self) -> float:
        """Mission seconds per wall second: the tone's declared rate under a simulator, else ``rate``."""
        return self._tone_rate if self.toned else self.rate

    def now(self, wall_s: float) -> float:
        """Mission seconds at ``wall_s`` (see the module docstring); never less than a value returned
        before."""
        self._last_now = max(self._last_now, self._estimate(wall_s))
        return self._last_now

    def _estimate(self, wall_s: float) -> float:
        if self._tone_t_s is not None:
            since = wall_s - self._tone_wall_s
            estimate = self._tone_t_s
            if since > self.tone_timeout_s:  # the tone is lost: flywheel from it (or a later sample)
                t, wall = self._tone_t_s, self._tone_wall_s
                if self._t_s is not None and self._t_s > t:
                    t, wall = self._t_s, self._wall_s
                estimate = t + (wall_s - wall) * self._tone_rate
        elif self._t_s is not None:
            estimate = self._t_s + (wall_s - self._wall_s) * self.rate
        else:
            estimate = wall_s - self.start_wall_s
        return estimate

    def elapsed(self, wall_s: float) -> float:
        """Seconds on the timebase that relative delays count on (see the module docstring): under a
        simulator the latest tone's MET, never extrapolated, flywheeled at the tone's rate once the
        tone is lost (as :meth:`now`), never less than a value returned before; in flight ``wall_s``
        (the monotonic clock) times ``rate``. The two are different timebases: :attr:`toned` says
        which one a reading is on (it changes once, at the first tone)."""
        if self._tone_met_s is None:
            return wall_s * self.rate
        estimate = self._tone_met_s
        since = wall_s - self._tone_wall_s
        if since > self.tone_timeout_s:
            estimate += since * self._tone_rate
        self._last_elapsed = max(self._last_elapsed, estimate)
        return self._last_elapsed

    def mission_from_utc(self, utc: float, now_utc: float, wall_s: float) -> float:
        """The mission time at which UTC ``utc`` falls (for deadlines)."""
        return self.now(wall_s) + (utc - now_utc) * self.current_rate()
