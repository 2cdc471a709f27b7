"""flight/inbox.py: bounded inbound pipes, the oldest shed, served in arrival order across pipes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.inbox import UPLINK_PIPES, Inbox, Pipe


def two_pipes() -> Inbox[str]:
    return Inbox([Pipe("a", depth=3, max_bytes=100), Pipe("b", depth=2, max_bytes=10)])


def test_a_full_pipe_sheds_its_oldest_and_counts_it() -> None:
    inbox = two_pipes()
    assert [inbox.put("a", f"a{i}", 1) for i in range(5)] == [0, 0, 0, 1, 1]
    assert inbox.waiting("a") == 3
    assert [inbox.take() for _ in range(4)] == [("a", "a2"), ("a", "a3"), ("a", "a4"), None]
    assert inbox.take_shed() == {"a": 2}
    assert inbox.take_shed() == {}  # the counts start again


def test_the_byte_budget_sheds_too_but_keeps_one_item_larger_than_it() -> None:
    inbox = two_pipes()
    inbox.put("b", "small", 4)
    assert inbox.put("b", "big", 50) == 1  # alone over the budget: what the broker let through is kept
    assert inbox.put("b", "next", 4) == 1  # and shed by the next one
    assert inbox.take() == ("b", "next") and inbox.take() is None


def test_items_are_served_in_the_order_they_were_put_across_pipes() -> None:
    inbox = two_pipes()
    for name, item in [("b", 1), ("a", 2), ("a", 3), ("b", 4), ("a", 5)]:
        inbox.put(name, str(item), 1)
    assert [inbox.take() for _ in range(5)] == [("b", "1"), ("a", "2"), ("a", "3"), ("b", "4"), ("a", "5")]


def test_one_pipe_flooded_keeps_the_newest_of_every_pipe() -> None:
    inbox = two_pipes()
    inbox.put("b", "telemetry", 1)
    for i in range(1000):
        inbox.put("a", f"flood{i}", 1)
    taken = [inbox.take() for _ in range(len(inbox))]
    assert taken == [("b", "telemetry"), ("a", "flood997"), ("a", "flood998"), ("a", "flood999")]


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Inbox([Pipe("a", 1, 1), Pipe("a", 2, 2)])
    with pytest.raises(ValueError, match="positive"):
        Pipe("a", 0, 10)
    with pytest.raises(KeyError):
        two_pipes().put("nope", "x", 1)


def test_flightds_pipes_bound_what_a_flood_can_hold() -> None:
    """A new command waits behind at most the pipes' depths, at ~0.1-0.2 ms of handling each (flight/inbox.py):
    256 of them is ~50 ms, half the 100 ms a ping after a flood is given (issue 10)."""
    assert sum(p.depth for p in UPLINK_PIPES) <= 256
    assert sum(p.max_bytes for p in UPLINK_PIPES) <= 32 << 20  # what a flood can make flightd hold
    assert len({p.name for p in UPLINK_PIPES}) == len(UPLINK_PIPES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.sampled_from("ab"), st.integers(0, 30)), st.none()), max_size=200))
def test_nothing_is_lost_unsaid_and_order_holds(ops: list[tuple[str, int] | None]) -> None:
    """Every item put is taken, shed (and counted) or still waiting; taken in put order; bounds held."""
    inbox = two_pipes()
    put = taken = shed = 0
    last_taken = -1
    for op in ops:
        if op is None:
            got = inbox.take()
            if got is not None:
                number = int(got[1])
                assert number > last_taken
                last_taken = number
                taken += 1
        else:
            name, size = op
            shed += inbox.put(name, str(put), size)
            put += 1
        for pipe in inbox.pipes.values():
            assert inbox.waiting(pipe.name) <= pipe.depth
    assert put == taken + shed + len(inbox)
    assert sum(inbox.take_shed().values()) == shed
