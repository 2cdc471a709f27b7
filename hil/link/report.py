"""The link part of a ``hil sil --link`` report: passes with the bytes the relay carried, the
submit -> result latencies against the contact plan, messages left waiting in the bridge, and the gaps
in the telemetry the ground recorded. Pure: the plan, the relay's counters, the ground's books and the
archive's sample times in, plain data out (mission seconds, bytes)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hil.link.contact import ContactPlan
from hil.link.ledger import JobLedger, percentile
from hil.link.model import Direction
from hil.link.relay import LinkStats


@dataclass(frozen=True)
class PassRecord:
    """One contact: ``stations`` in it, ``aos_s``/``los_s`` (clipped to the run), bytes the relay
    delivered each way in it, and ``bridge_up_s``: seconds from acquisition to the first connection the
    relay accepted in it (the bridge's reconnection; None when it never connected)."""

    index: int
    stations: tuple[str, ...]
    aos_s: float
    los_s: float
    bytes_up: int
    bytes_down: int
    bridge_up_s: float | None


@dataclass
class LinkReport:
    """See docs/hil.md ("The report across the link") for every field."""

    mode: str
    board: str
    contact_warp: float
    gap_warp: float
    passes: list[PassRecord]
    bridge_bytes_up: int
    bridge_bytes_down: int
    jobs_submitted: int
    jobs_done: int
    unanswered: int
    duplicated: int
    repeated_deliveries: int
    resends: int
    failed: dict[str, str]
    latency_s: dict[str, float | None]
    plan_check: dict[str, Any]
    bridge_waiting_up: int
    bridge_waiting_down: int
    telemetry_gaps: list[tuple[float, float]] = field(default_factory=list)
    telemetry_out_of_contact: int = 0
    relay_events: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def passes(plan: ContactPlan, stats: LinkStats, end_s: float) -> list[PassRecord]:
    """The contacts that began before ``end_s``, with the relay's bytes and bridge reconnection."""
    out = []
    for i, (aos, los) in enumerate(plan.contacts):
        if aos >= end_s:
            break
        per = stats.contact_bytes.get(i, {Direction.UP: 0, Direction.DOWN: 0})
        accepted = [e.t_s for e in stats.events if e.kind == "accepted" and aos <= e.t_s < los]
        out.append(PassRecord(i, plan.stations_of(i), aos, min(los, end_s), per[Direction.UP], per[Direction.DOWN],
                              min(accepted) - aos if accepted else None))
    return out


def telemetry_gaps(times_s: Sequence[float], period_s: float, factor: float = 2.5) -> list[tuple[float, float]]:
    """(last sample before, first sample after) of every interval between consecutive samples longer
    than ``factor`` telemetry periods: where the ground has no telemetry (out of contact)."""
    t = sorted(times_s)
    return [(a, b) for a, b in itertools.pairwise(t) if b - a > factor * period_s]


def _finite(x: float) -> float | None:
    """None for NaN (no values): the report is JSON, which has no NaN."""
    return None if math.isnan(x) else x


def link_report(plan: ContactPlan, stats: LinkStats, ledger: JobLedger, waiting: dict[Direction, int],
                end_s: float, *, board: str, contact_warp: float, gap_warp: float,
                ground_times_s: Sequence[float] = (), period_s: float = 1.0) -> LinkReport:
    """``waiting``: :meth:`hil.link.backlog.BridgeBacklog.waiting` at the end of the run;
    ``ground_times_s``: mission times of the telemetry samples (one channel) the ground recorded."""
    lat = ledger.latencies_s()
    check = ledger.plan_check(plan)
    kinds: dict[str, int] = {}
    for e in stats.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    return LinkReport(
        mode=plan.mode,
        board=board,
        contact_warp=contact_warp,
        gap_warp=gap_warp,
        passes=passes(plan, stats, end_s),
        bridge_bytes_up=stats.bytes[Direction.UP],
        bridge_bytes_down=stats.bytes[Direction.DOWN],
        jobs_submitted=ledger.submitted,
        jobs_done=ledger.done,
        unanswered=len(ledger.unanswered()),
        duplicated=len(ledger.duplicated()),
        repeated_deliveries=ledger.repeats(),
        resends=ledger.resends(),
        failed=ledger.failures(),
        latency_s={"n": float(len(lat)), "p50": _finite(percentile(lat, 50)), "p90": _finite(percentile(lat, 90)),
                   "p99": _finite(percentile(lat, 99)), "max": max(lat, default=None)},
        plan_check={
            "in_contact": check.in_contact, "in_contact_same_pass": check.in_contact_same_pass,
            "out_of_contact": check.out_of_contact, "out_of_contact_next_pass": check.out_of_contact_next_pass,
            "late": list(check.late), "after_aos_p50_s": _finite(percentile(check.after_aos_s, 50)),
            "after_aos_p99_s": _finite(percentile(check.after_aos_s, 99)),
            "after_aos_max_s": max(check.after_aos_s, default=None),
        },
        bridge_waiting_up=waiting[Direction.UP],
        bridge_waiting_down=waiting[Direction.DOWN],
        telemetry_gaps=telemetry_gaps(ground_times_s, period_s),
        telemetry_out_of_contact=sum(1 for t in ground_times_s if not plan.in_contact(t)),
        relay_events=kinds,
    )
