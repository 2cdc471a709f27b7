"""Anti-replay window arithmetic (flight.antireplay) against a reference model, and across a restart."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.antireplay import DEFAULT_WINDOW, ReplayError, ReplayWindow

sizes = st.integers(min_value=1, max_value=130)
# Sequences that mostly move forward by small steps, sometimes jump, sometimes go back.
steps = st.lists(st.integers(min_value=-80, max_value=200), min_size=1, max_size=120)


def reference_accepts(accepted: set[int], sequence: int, size: int) -> bool:
    """The rule in words: positive, never accepted before, and above (highest accepted - size)."""
    highest = max(accepted, default=0)
    return sequence > 0 and sequence not in accepted and sequence > highest - size


def run(window: ReplayWindow, sequences: list[int]) -> tuple[ReplayWindow, list[bool]]:
    verdicts = []
    for seq in sequences:
        try:
            window = window.accept(seq)
            verdicts.append(True)
        except ReplayError:
            verdicts.append(False)
    return window, verdicts


def walk(start: int, deltas: list[int]) -> list[int]:
    out, seq = [], start
    for d in deltas:
        seq = max(seq + d, -2)
        out.append(seq)
    return out


@settings(max_examples=300, deadline=None)
@given(size=sizes, start=st.integers(min_value=0, max_value=2**64 - 300), deltas=steps)
def test_window_decides_exactly_as_the_reference_rule(size: int, start: int, deltas: list[int]) -> None:
    window = ReplayWindow(size=size)
    accepted: set[int] = set()
    for seq in walk(start, deltas):
        expect = reference_accepts(accepted, seq, size)
        assert (window.refusal(seq) is None) == expect, (seq, sorted(accepted)[-5:], window)
        if expect:
            window = window.accept(seq)
            accepted.add(seq)
        else:
            with pytest.raises(ReplayError):
                window.accept(seq)
        assert window.top == max(accepted, default=0)


@settings(max_examples=200, deadline=None)
@given(size=sizes, deltas=steps, split=st.integers(min_value=0, max_value=120))
def test_a_restart_from_the_persisted_record_decides_as_before(size: int, deltas: list[int], split: int) -> None:
    sequences = walk(1000, deltas)
    # Everything sent before the "reset", then everything again (a recording replayed) plus the rest.
    before, after = sequences[:split], sequences
    straight, _ = run(ReplayWindow(size=size), before)
    restored = ReplayWindow.from_record(straight.to_record())
    assert restored == straight
    _, verdicts_straight = run(straight, after)
    _, verdicts_restored = run(restored, after)
    assert verdicts_straight == verdicts_restored
    # Nothing accepted before the restart is accepted after it.
    accepted_before = {s for s, ok in zip(before, run(ReplayWindow(size=size), before)[1], strict=True) if ok}
    for seq in accepted_before:
        assert restored.refusal(seq) is not None


@settings(max_examples=100, deadline=None)
@given(size=st.integers(min_value=1, max_value=64), seed=st.integers(min_value=0, max_value=2**32))
def test_any_reordering_within_the_window_is_accepted_once(size: int, seed: int) -> None:
    batch = list(range(500, 500 + size))
    random.Random(seed).shuffle(batch)
    window, verdicts = run(ReplayWindow(top=499, seen=1, size=size), batch)
    assert all(verdicts)
    _, again = run(window, batch)
    assert not any(again)


def test_first_message_of_a_key_is_accepted_and_reasons_name_the_case() -> None:
    w = ReplayWindow().accept(1)
    assert w.top == 1 and w.seen == 1
    w = w.accept(1000)
    assert w.refusal(1000) == "sequence number 1000 was already accepted (replay)"
    assert "behind the anti-replay window" in (w.refusal(1000 - DEFAULT_WINDOW) or "")
    assert w.refusal(1000 - DEFAULT_WINDOW + 1) is None  # inside the window, never seen
    assert w.refusal(0) == "sequence number 0 is not positive"


def test_largest_sequence_number_and_inconsistent_records() -> None:
    top = 2**64 - 1
    w = ReplayWindow().accept(top)
    assert ReplayWindow.from_record(w.to_record()).refusal(top) is not None
    with pytest.raises(ValueError, match="inconsistent"):
        ReplayWindow(top=5, seen=1 << 64, size=64)
    with pytest.raises(ValueError, match="window size"):
        ReplayWindow(size=0)


def test_resizing_keeps_what_fits() -> None:
    w = ReplayWindow(size=64)
    for seq in (100, 90, 50):
        w = w.accept(seq)
    small = w.resized(16)
    assert small.refusal(90) is not None and small.refusal(50) is not None and small.refusal(95) is None
