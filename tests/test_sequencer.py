"""The pure sequence trigger engine (flight/sequencer.py) and the sequence schema (link/sequence.py)."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flight.mission_clock import MissionClock
from flight.sequencer import Clocks, Firing, SequenceProgress, Sequencer
from flight.sequences import resume_shift
from link.codec import pack_tensors
from link.messages import TOPIC_ID_PATTERN, Telemetry
from link.sequence import SHORT_ID_PATTERN, Region, Sequence, job_id_for

INPUTS = {name: t.model_dump(exclude_none=True)
          for name, t in pack_tensors({"image": np.zeros((1, 1, 8, 8), np.float32)}, framed=False)[0].items()}


def seq(*entries: dict[str, Any], sid: str = "s1") -> Sequence:
    return Sequence.model_validate({
        "sequence_id": sid,
        "entries": [{"job": {"model": "digits-int8", "inputs": INPUTS}, **e} for e in entries],
    })


ORBIT_S = 5760
"""An orbital period, s (a 550 km circular orbit's is 5739 s; the link refuses one below 5069 s)."""


def orbit(t_s: float, sunlit: float, **extra: float) -> Telemetry:
    return Telemetry(sat="sat1", channel="orbit", t_s=t_s, values={"sunlit": sunlit, **extra})


def run(engine: Sequencer, steps: list[tuple[Clocks, list[Telemetry]]]) -> list[Firing]:
    out: list[Firing] = []
    for clocks, samples in steps:
        out += engine.step(clocks, samples)
    return out


# ------------------------------------------------------------------------------------ schema


def test_schema_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValidationError, match="exactly one of mission_s and utc"):
        seq({"name": "a", "trigger": {"kind": "at"}})
    with pytest.raises(ValidationError, match="need a region"):
        seq({"name": "a", "trigger": {"kind": "event", "event": "region_entry"}})
    with pytest.raises(ValidationError, match="unique"):
        seq({"name": "a", "trigger": {"kind": "after", "delay_s": 1}},
            {"name": "a", "trigger": {"kind": "after", "delay_s": 1}})
    with pytest.raises(ValidationError, match="exactly one of period_s and orbits"):
        seq({"name": "a", "trigger": {"kind": "every", "period_s": 10, "orbits": 1}})
    with pytest.raises(ValidationError, match="timezone"):
        seq({"name": "a", "trigger": {"kind": "at", "utc": "2026-01-01T00:00:00"}})
    for name in ("a.b", "a_b"):  # no topic level (job ids are), or an ambiguous job id
        with pytest.raises(ValidationError):
            seq({"name": name, "trigger": {"kind": "after", "delay_s": 1}})
    with pytest.raises(ValidationError, match="inline"):
        Sequence.model_validate({"sequence_id": "s", "entries": [{"name": "a", "trigger": {
            "kind": "after", "delay_s": 1}, "job": {"model": "m", "inputs": {"x": {
                "dtype": "float32", "shape": [1], "offset": 0, "nbytes": 4}}}}]})


@settings(max_examples=200, deadline=None)
@given(a=st.tuples(st.from_regex(SHORT_ID_PATTERN, fullmatch=True), st.from_regex(SHORT_ID_PATTERN, fullmatch=True),
                   st.integers(1, 10**13)),
       b=st.tuples(st.from_regex(SHORT_ID_PATTERN, fullmatch=True), st.from_regex(SHORT_ID_PATTERN, fullmatch=True),
                   st.integers(1, 10**13)))
def test_job_ids_are_topic_levels_and_name_one_occurrence(a: tuple[str, str, int], b: tuple[str, str, int]) -> None:
    """Every sequence job id is a valid job id (a topic level: no dots) and no two occurrences share one."""
    assert re.fullmatch(TOPIC_ID_PATTERN, job_id_for(*a))
    assert (job_id_for(*a) == job_id_for(*b)) == (a == b)


def test_region_box_with_antimeridian_wrap() -> None:
    box = Region(lat_min=-10, lat_max=10, lon_min=170, lon_max=-170)
    assert box.contains(0, 175) and box.contains(0, -175) and box.contains(0, 185)
    assert not box.contains(0, 0) and not box.contains(20, 175)
    assert Region(lat_min=40, lat_max=50, lon_min=0, lon_max=10).contains(45, 5)


# ---------------------------------------------------------------------------- basic triggers


def test_at_mission_time_waits_for_the_timebase() -> None:
    engine = Sequencer()
    engine.arm(seq({"name": "a", "trigger": {"kind": "at", "mission_s": 100}}), 0.0)
    assert engine.step(Clocks(500.0, None)) == []  # no timebase: nothing, however late it is
    fired = engine.step(Clocks(501.0, 110.0))
    assert [(f.job_id, f.action, f.late, f.late_s) for f in fired] == [("s1_a_1", "run", False, 10.0)]
    assert engine.finished()["s1"].state == "done" and engine.armed == []
    assert engine.step(Clocks(502.0, 120.0)) == [] and engine.finished() == {}


def test_at_utc() -> None:
    engine = Sequencer()
    when = datetime.datetime(2026, 3, 1, 14, 2, 10, tzinfo=datetime.UTC)
    engine.arm(seq({"name": "a", "trigger": {"kind": "at", "utc": when.isoformat()}}), 0.0)
    assert engine.step(Clocks(1.0, 5.0, when.timestamp() - 1)) == []
    assert [f.late_s for f in engine.step(Clocks(2.0, 6.0, when.timestamp() + 0.5))] == [0.5]


def test_relative_chain_and_from_start() -> None:
    engine = Sequencer()
    engine.arm(seq({"name": "a", "trigger": {"kind": "after", "delay_s": 10}},
                   {"name": "b", "trigger": {"kind": "after", "delay_s": 5}},
                   {"name": "c", "trigger": {"kind": "after", "delay_s": 12, "of": "start"}}), 100.0)
    times = {f.entry: f.mono_s for f in run(engine, [(Clocks(100.0 + t), []) for t in range(0, 30)])}
    assert times == {"a": 110.0, "b": 115.0, "c": 112.0}


def test_eclipse_exit_every_occurrence_and_offset() -> None:
    engine = Sequencer()
    engine.arm(seq({"name": "x", "trigger": {"kind": "event", "event": "eclipse_exit", "count": None,
                                            "offset_s": 2}}), 0.0)
    flags = [1, 1, 0, 0, 1, 1, 1, 0, 1]
    fired = run(engine, [(Clocks(float(t), float(t)), [orbit(t, f)]) for t, f in enumerate(flags)] +
                [(Clocks(float(t), float(t)), []) for t in range(9, 12)])
    assert [(f.occurrence, f.mono_s) for f in fired] == [(1, 6.0), (2, 10.0)]


def test_aos_los_and_region_events() -> None:
    engine = Sequencer()
    box = {"lat_min": 40, "lat_max": 50, "lon_min": 0, "lon_max": 10}
    engine.arm(seq({"name": "aos", "trigger": {"kind": "event", "event": "aos"}},
                   {"name": "los", "trigger": {"kind": "event", "event": "los"}},
                   {"name": "in", "trigger": {"kind": "event", "event": "region_entry", "region": box}},
                   {"name": "out", "trigger": {"kind": "event", "event": "region_exit", "region": box}}), 0.0)
    track = [(0, 30, 0), (0, 42, 5), (1, 45, 5), (1, 55, 5), (0, 55, 5)]
    fired = run(engine, [(Clocks(float(t), float(t)), [Telemetry(sat="s", channel="orbit", t_s=t, values={
        "contact": c, "lat_deg": lat, "lon_deg": lon})]) for t, (c, lat, lon) in enumerate(track)])
    assert {f.entry: f.mono_s for f in fired} == {"in": 1.0, "aos": 2.0, "out": 3.0, "los": 4.0}


def test_period_and_orbits() -> None:
    """Every 10 s, three times; every 2 orbits (the orbit channel's period, a 550 km orbit's) from 5 s."""
    engine = Sequencer()
    engine.arm(seq({"name": "p", "trigger": {"kind": "every", "period_s": 10, "count": 3}},
                   {"name": "o", "trigger": {"kind": "every", "orbits": 2, "first_after_s": 5, "count": 2}}), 0.0)
    times = [*range(0, 60), *range(60, 2 * 2 * ORBIT_S, 5)]
    steps = [(Clocks(float(t), float(t)), [orbit(t, 1, period_s=ORBIT_S)] if t == 3 else []) for t in times]
    fired = run(engine, steps)
    assert [f.mono_s for f in fired if f.entry == "p"] == [0.0, 10.0, 20.0]
    assert [f.mono_s for f in fired if f.entry == "o"] == [5.0, 5.0 + 2 * ORBIT_S]


# ------------------------------------------------------------------------------- late policy


@pytest.mark.parametrize(("policy", "actions", "state"), [("run", ["run"], "done"), ("skip", ["skip"], "done"),
                                                           ("fail", ["fail"], "failed")])
def test_late_policy_after_an_outage(policy: str, actions: list[str], state: str) -> None:
    engine = Sequencer()
    engine.arm(seq({"name": "a", "trigger": {"kind": "at", "mission_s": 100}, "late": policy, "late_after_s": 30},
                   {"name": "b", "trigger": {"kind": "after", "delay_s": 1000}}), 0.0)
    assert engine.step(Clocks(50.0, 50.0)) == []
    fired = engine.step(Clocks(400.0, 400.0))  # the reset: nothing ran between 50 and 400
    assert [f.action for f in fired] == actions and fired[0].late and fired[0].late_s == 300.0
    if state == "failed":
        assert engine.finished()["s1"].state == "failed" and "policy fail" in (engine.finished()["s1"].reason or "")
    else:
        assert engine.armed == ["s1"]


def test_missed_periods_run_only_the_latest() -> None:
    engine = Sequencer()
    engine.arm(seq({"name": "p", "trigger": {"kind": "every", "period_s": 10}, "late_after_s": 1}), 0.0)
    engine.step(Clocks(0.0))
    fired = engine.step(Clocks(35.0))
    assert [(f.occurrence, f.action) for f in fired] == [(2, "skip"), (3, "skip"), (4, "run")]


# -------------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(delay=st.floats(0, 500), dts=st.lists(st.floats(0.01, 40), min_size=1, max_size=80),
       jumps=st.lists(st.floats(-4000, 4000), min_size=80, max_size=80))
def test_relative_delay_ignores_mission_and_utc_jumps(delay: float, dts: list[float], jumps: list[float]) -> None:
    """However mission time and UTC jump about (by up to 4000 s either way around a mission time of
    5000 s), the relative entry fires at the first step whose elapsed time reaches start + delay,
    exactly once."""
    engine = Sequencer()
    engine.arm(seq({"name": "r", "trigger": {"kind": "after", "delay_s": delay, "of": "start"}}), 0.0)
    mono, fired, first_due = 0.0, [], None
    for dt, jump in zip(dts, jumps, strict=False):
        mono += dt
        fired += engine.step(Clocks(mono, 5000.0 + jump, 1.7e9 + jump), [orbit(5000.0 + jump, 1)])
        if first_due is None and mono >= delay:
            first_due = mono
    if first_due is None:
        assert fired == []
    else:
        assert [(f.job_id, f.mono_s) for f in fired] == [("s1_r_1", first_due)]


@settings(max_examples=150, deadline=None)
@given(delay=st.floats(0, 2000), steps=st.lists(st.tuples(st.sampled_from([10.0, 40.0]), st.floats(0.0, 0.3),
                                                          st.floats(0, 7200), st.booleans()), min_size=1, max_size=80))
def test_relative_delay_counts_the_simulators_met_through_mission_time_jumps(
    delay: float, steps: list[tuple[float, float, float, bool]]
) -> None:
    """The shell's way under a simulator: the engine's clock is MissionClock.elapsed fed with time
    tones (MET steps of a quarter or a whole telemetry period, delivered at any wall time, bunched
    or late), whose mission time jumps forward by up to 2 h at random tones. A relative entry and a
    periodic one fire when the MET says so, exactly as without any jump; an absolute entry follows
    mission time (jumps included), as it must."""
    def drive(with_jumps: bool) -> list[tuple[str, float]]:
        clock = MissionClock(start_wall_s=0.0)
        engine = Sequencer()
        met, wall, offset = 0.0, 0.0, 0.0
        clock.tone(0.0, wall, 200.0, met_s=0.0)
        engine.arm(seq({"name": "r", "trigger": {"kind": "after", "delay_s": delay, "of": "start"}},
                       {"name": "p", "trigger": {"kind": "every", "period_s": 600.0, "count": 3}, "late_after_s": 1e9},
                       {"name": "a", "trigger": {"kind": "at", "mission_s": 20_000.0}, "late_after_s": 1e9}),
                   clock.elapsed(wall))
        out: list[tuple[str, float]] = []
        for d_met, d_wall, jump, jumps in steps:
            met, wall = met + d_met, wall + d_wall
            offset += jump if jumps and with_jumps else 0.0
            clock.tone(met + offset, wall, 200.0, met_s=met)
            clocks = Clocks(clock.elapsed(wall), clock.now(wall), 1.7e9 + clock.now(wall))
            out += [(f.entry, f.mono_s) for f in engine.step(clocks)]
        return out

    jumped, plain = drive(True), drive(False)
    assert [f for f in jumped if f[0] != "a"] == [f for f in plain if f[0] != "a"]
    met_end = sum(d for d, _, _, _ in steps)
    assert [t for e, t in plain if e == "r"] == ([min(m for m in _prefix_sums(steps) if m >= delay)]
                                                 if met_end >= delay else [])
    assert len([e for e, _ in jumped if e == "a"]) <= 1


def _prefix_sums(steps: list[tuple[float, float, float, bool]]) -> list[float]:
    out, total = [], 0.0
    for d, _, _, _ in steps:
        total += d
        out.append(total)
    return out


@settings(max_examples=150, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=1, max_size=60), count=st.one_of(st.none(), st.integers(1, 5)),
       cut=st.integers(0, 60))
def test_events_fire_once_per_edge_and_survive_a_restart(flags: list[bool], count: int | None, cut: int) -> None:
    """Eclipse exits fire once per 0 -> 1 edge (up to ``count``); stopping after any step, storing
    the progress as JSON and resuming it in a new engine changes nothing."""
    def steps() -> list[tuple[Clocks, list[Telemetry]]]:
        return [(Clocks(float(t), float(t)), [orbit(t, float(f))]) for t, f in enumerate(flags)]

    def sequence() -> Sequence:
        return seq({"name": "x", "trigger": {"kind": "event", "event": "eclipse_exit", "count": count}},
                   {"name": "y", "trigger": {"kind": "every", "period_s": 7, "count": 4}})

    whole = Sequencer()
    whole.arm(sequence(), 0.0)
    reference = run(whole, steps())
    edges = [t for t in range(1, len(flags)) if flags[t] and not flags[t - 1]]
    expected = edges if count is None else edges[:count]
    assert [f.mono_s for f in reference if f.entry == "x"] == [float(t) for t in expected]
    assert [f.job_id for f in reference if f.entry == "x"] == [f"s1_x_{i}" for i in range(1, len(expected) + 1)]

    first = Sequencer()
    progress = first.arm(sequence(), 0.0)
    before = run(first, steps()[:cut])
    stored = json.dumps((first.progress("s1") or first.finished().get("s1") or progress).to_dict())
    second = Sequencer()
    resumed = SequenceProgress.from_dict(json.loads(stored))
    after = [] if resumed.state != "armed" else (second.arm(sequence(), 999.0, resumed) and run(second, steps()[cut:]))
    assert [(f.job_id, f.mono_s) for f in before + after] == [(f.job_id, f.mono_s) for f in reference]


@settings(max_examples=100, deadline=None)
@given(delta=st.floats(-1e6, 1e6), delay=st.floats(1, 100))
def test_shifted_progress_keeps_remaining_time(delta: float, delay: float) -> None:
    """After a reboot the shell moves the stored monotonic times; the remaining delay is unchanged."""
    engine = Sequencer()
    p = engine.arm(seq({"name": "r", "trigger": {"kind": "after", "delay_s": delay, "of": "start"}}), 10.0)
    moved = SequenceProgress.from_dict(p.to_dict()).shifted(delta)
    other = Sequencer()
    other.arm(seq({"name": "r", "trigger": {"kind": "after", "delay_s": delay, "of": "start"}}), 0.0, moved)
    assert other.step(Clocks(10.0 + delta + delay - 0.5)) == []
    assert [f.entry for f in other.step(Clocks(10.0 + delta + delay))] == ["r"]


def test_resume_on_the_timebase_that_ran_on_else_estimate_from_utc() -> None:
    """flight.sequences.resume_shift: what a restarted flightd does with a stored progress."""
    saved = {"timebase": "monotonic", "boot": "b1", "mono_s": 1000.0, "utc_s": 1.7e9}
    # same boot: CLOCK_MONOTONIC ran on, nothing to move (however long flightd was down)
    assert resume_shift(saved, "monotonic", 1500.0, 1.7e9 + 500.0, "b1", 1.0) == (0.0, None)
    # a reboot: the monotonic clock restarted near 0; 300 s of UTC passed since the save
    shift, why = resume_shift(saved, "monotonic", 20.0, 1.7e9 + 300.0, "b2", 1.0)
    assert shift == 20.0 - 1300.0 and why == "the board rebooted"
    tone = {**saved, "timebase": "tone", "mono_s": 4560.0}
    # a simulator's MET that ran on (same run): nothing to move, whatever mission time or UTC did
    assert resume_shift(tone, "tone", 4600.0, 1.7e9 + 3.0, "b1", 200.0) == (0.0, None)
    # a new simulator run (its MET went back): 3 s of UTC at warp 200
    shift, why = resume_shift(tone, "tone", 40.0, 1.7e9 + 3.0, "b1", 200.0)
    assert shift == 40.0 - (4560.0 + 600.0) and why is not None and "went back" in why
    # stored under a simulator, none now (no tone within the timeout): the monotonic clock, from UTC
    shift, why = resume_shift(tone, "monotonic", 7000.0, 1.7e9 + 10.0, "b1", 1.0)
    assert shift == 7000.0 - 4570.0 and why == "stored on the tone timebase, now on the monotonic one"
    # a progress stored before the timebase was recorded counts as monotonic
    old = {k: v for k, v in saved.items() if k != "timebase"}
    assert resume_shift(old, "monotonic", 1500.0, 1.7e9, "b1", 1.0) == (0.0, None)


def test_docs_worked_examples_are_valid_sequences() -> None:
    """docs/ops.md's three worked sequence examples validate against the schema (inputs aside)."""
    import re
    import tomllib
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "ops.md").read_text()
    ids = []
    for block in re.findall(r"```toml\n(.*?)```", text, re.S):
        doc = tomllib.loads(block)
        if "entries" not in doc:
            continue
        for entry in doc["entries"]:
            assert isinstance(entry["job"]["inputs"], str | dict)
            entry["job"]["inputs"] = INPUTS
        ids.append(Sequence.model_validate(doc).sequence_id)
    assert ids == ["cloudmask-day", "flood-0314", "pass-housekeeping"]
