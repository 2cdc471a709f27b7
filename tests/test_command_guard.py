"""flight.command_guard.CommandGuard: signature, freshness window, one use per id (no broker)."""

from __future__ import annotations

import pytest

from flight.command_guard import CommandGuard
from link.auth import AuthError, sign
from link.messages import Command, Ping

KEY = bytes(range(32))
WINDOW = 600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def command(command_id: str, issued_utc: float, key: bytes = KEY) -> Command:
    return sign(Command(command_id=command_id, issued_utc=issued_utc, body=Ping()), "ground", key)


def admit(guard: CommandGuard, c: Command) -> None:
    guard.check(c, issued_utc=c.issued_utc, once_id=c.command_id)


def test_without_keys_everything_passes_unchecked() -> None:
    guard = CommandGuard({}, WINDOW, Clock(1e6))
    unsigned = Command(command_id="c1", issued_utc=0.0, body=Ping())
    assert not guard.enforcing
    for _ in range(2):  # not signed, stale, and repeated: all accepted
        admit(guard, unsigned)
    assert guard.remembered() == 0


def test_unsigned_forged_and_unknown_key_are_refused() -> None:
    guard = CommandGuard({"ground": KEY}, WINDOW, Clock(1000.0))
    assert guard.enforcing
    with pytest.raises(AuthError, match="command is not signed"):
        admit(guard, Command(command_id="c1", issued_utc=1000.0, body=Ping()))
    with pytest.raises(AuthError, match="bad command signature"):
        admit(guard, command("c1", 1000.0, key=bytes(32)))
    other = sign(Command(command_id="c1", issued_utc=1000.0, body=Ping()), "lab", KEY)
    with pytest.raises(AuthError, match="unknown key_id 'lab'"):
        admit(guard, other)
    admit(guard, command("c1", 1000.0))  # none of the refusals used up the id


def test_freshness_window_both_sides_and_at_its_edges() -> None:
    clock = Clock(10_000.0)
    guard = CommandGuard({"ground": KEY}, WINDOW, clock)
    with pytest.raises(AuthError, match="command issued_utc 9399 is outside the 600 s window"):
        admit(guard, command("old", 10_000.0 - WINDOW - 1))
    with pytest.raises(AuthError, match="outside the 600 s window"):
        admit(guard, command("future", 10_000.0 + WINDOW + 1))
    admit(guard, command("edge-past", 10_000.0 - WINDOW))
    admit(guard, command("edge-future", 10_000.0 + WINDOW))
    with pytest.raises(AuthError, match="model upload carries no issued_utc"):
        guard.check(command("x", 10_000.0), issued_utc=None, what="model upload")


def test_an_id_is_accepted_once() -> None:
    guard = CommandGuard({"ground": KEY}, WINDOW, Clock(1000.0))
    c = command("c1", 1000.0)
    admit(guard, c)
    with pytest.raises(AuthError, match=r"command id c1 was already used \(replay\)"):
        admit(guard, c)
    with pytest.raises(AuthError, match="replay"):  # re-signed with another issue time: same id, refused
        admit(guard, command("c1", 1001.0))
    guard.check(c, issued_utc=c.issued_utc)  # without once_id (an upload begin): no replay check


def test_a_future_dated_command_cannot_be_replayed_after_its_first_window() -> None:
    """Issued a full window ahead, a command stays fresh for two windows after it was accepted; its id
    must be remembered for all of that time, not only for one window after acceptance."""
    clock = Clock(1000.0)
    guard = CommandGuard({"ground": KEY}, WINDOW, clock)
    ahead = command("ahead", 1000.0 + WINDOW)
    admit(guard, ahead)
    clock.now = 1000.0 + 1.5 * WINDOW
    admit(guard, command("other", clock.now))  # a check in between prunes what is stale
    with pytest.raises(AuthError, match="already used"):
        admit(guard, ahead)
    clock.now = 1000.0 + 2 * WINDOW + 1  # now the replay is stale anyway, and the id is forgotten
    with pytest.raises(AuthError, match="outside the 600 s window"):
        admit(guard, ahead)
    admit(guard, command("later", clock.now))
    assert guard.remembered() == 2  # "other" (fresh until 2500 s) and "later"; "ahead" is forgotten
    clock.now += 2 * WINDOW
    admit(guard, command("last", clock.now))
    assert guard.remembered() == 1  # memory stays bounded by the traffic of one window


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_s"):
        CommandGuard({"ground": KEY}, 0.0, Clock(0.0))
