"""The governor's mode machine: NOMINAL / THROTTLED / SAFE.

- SAFE is entered at once when a hard limit trips or telemetry is stale or missing
  (see :class:`flight.governor.governor.Governor`: a required channel silent for more than
  ``stale_periods`` telemetry periods).
- SAFE is left only when nothing demands it any more *and* every hard limit is back inside its
  hysteresis band (:meth:`flight.governor.limits.LimitChecker.outside_bands`), and not before
  ``safe_min_dwell_s`` has passed.
- Between NOMINAL and THROTTLED the machine moves only after ``min_dwell_s`` in the current mode, so
  a budget hovering at the throttle boundary cannot make the mode flap.
Every change is returned with its reasons; the caller turns it into an Event(kind=MODE).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from link.messages import Mode


@dataclass(frozen=True)
class ModeInputs:
    """What the mode depends on at one instant.

    ``safe_reasons``: why SAFE is demanded now (tripped hard limits, stale channels); empty if none.
    ``outside_bands``: hard limits not yet back inside their hysteresis band (blocks leaving SAFE).
    ``throttle_reasons``: why the governor restricts compute (budget below full power, soft limits).
    """

    safe_reasons: tuple[str, ...] = ()
    outside_bands: tuple[str, ...] = ()
    throttle_reasons: tuple[str, ...] = ()


@dataclass
class ModeMachine:
    """Mode state with dwell times (s). Pure: the caller passes ``now_s``."""

    min_dwell_s: float = 60.0
    safe_min_dwell_s: float = 10.0
    mode: Mode = Mode.SAFE
    since_s: float | None = None
    history: list[tuple[float, Mode]] = field(default_factory=list)

    def step(self, now_s: float, inputs: ModeInputs) -> tuple[Mode, bool, list[str]]:
        """Advance to ``now_s``; return (mode, changed, reasons for the mode now)."""
        if self.since_s is None:
            self.since_s = now_s
        dwell = now_s - self.since_s
        target = self.mode
        reasons: list[str]
        if inputs.safe_reasons:
            target, reasons = Mode.SAFE, list(inputs.safe_reasons)
        elif self.mode is Mode.SAFE:
            if inputs.outside_bands:
                reasons = [f"{name} not yet inside its hysteresis band" for name in inputs.outside_bands]
            elif dwell < self.safe_min_dwell_s:
                reasons = [f"SAFE minimum dwell {self.safe_min_dwell_s:g} s"]
            else:
                target = Mode.THROTTLED if inputs.throttle_reasons else Mode.NOMINAL
                reasons = ["all limits back inside their hysteresis bands", *inputs.throttle_reasons]
        else:
            wanted = Mode.THROTTLED if inputs.throttle_reasons else Mode.NOMINAL
            reasons = list(inputs.throttle_reasons) or ["budget at full power"]
            if wanted is not self.mode and dwell >= self.min_dwell_s:
                target = wanted
        changed = target is not self.mode
        if changed:
            self.mode, self.since_s = target, now_s
            self.history.append((now_s, target))
        return self.mode, changed, reasons
