"""The command guard: whether a message from the ground may be acted on.

Three checks, in this order, each refusal an :class:`link.auth.AuthError` whose text goes back on the
wire and into the log:

1. signature: the message's ``auth`` tag verifies under one of the configured keys
   (:func:`link.auth.verify`, HMAC-SHA256 over the document as received);
2. freshness: its ``issued_utc`` lies within ``window_s`` of the satellite clock, either side
   (``security.command_window_s``, 600 s by default: docs/icd.md "Command authentication");
3. one use per id: an id accepted before is a replay (commands; a model upload's begin is re-sent on
   every resume, so uploads pass no id). An id is remembered until its message would fail the
   freshness check anyway (``issued_utc + window_s``), so memory stays bounded by the traffic of
   one window and no replay outlives its memory, even of a message issued up to a window ahead.

With no keys configured every message passes unchecked (a lab set-up; flightd logs a warning at start).

This class is the single seam for authenticating ground traffic onboard: flightd's commands and the
uplink receiver's upload begins both go through :meth:`CommandGuard.check`. Replacing the HMAC with
Ed25519 signatures and the in-memory id set with a persisted anti-replay counter changes this class only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel

from link.auth import AuthError, verify


class CommandGuard:
    """Signature, freshness window and one use per id (see the module docstring).

    ``keys``: key_id -> secret (bytes); empty = accept everything. ``window_s``: the freshness window, s.
    ``clock``: the satellite's UTC clock, s since the epoch.
    """

    def __init__(self, keys: Mapping[str, bytes], window_s: float, clock: Callable[[], float]) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.keys = dict(keys)
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[str, float] = {}  # id -> the satellite time after which it is stale

    @property
    def enforcing(self) -> bool:
        """False when no keys are configured and every message is accepted unsigned."""
        return bool(self.keys)

    def check(
        self,
        message: BaseModel,
        *,
        issued_utc: float | None,
        received: Mapping[str, object] | None = None,
        what: str = "command",
        once_id: str | None = None,
    ) -> None:
        """Return if ``message`` may be acted on; raise :class:`AuthError` with the reason otherwise.

        ``issued_utc``: when the ground issued it (UTC s). ``received``: the JSON document as it arrived
        (the tag is checked over it). ``what`` names the message in the reasons. ``once_id``: an id that
        is accepted once (it is remembered only when every other check passed).
        """
        if not self.keys:
            return
        verify(message, self.keys, what=what, received=received)
        now = self.clock()
        window = self.window_s
        if issued_utc is None:
            raise AuthError(f"{what} carries no issued_utc: it must be within the {window:.0f} s window")
        if abs(now - issued_utc) > window:
            raise AuthError(f"{what} issued_utc {issued_utc:.0f} is outside the {window:.0f} s window")
        if once_id is None:
            return
        self._seen = {i: stale_after for i, stale_after in self._seen.items() if stale_after >= now}
        if once_id in self._seen:
            raise AuthError(f"{what} id {once_id} was already used (replay)")
        self._seen[once_id] = issued_utc + window

    def remembered(self) -> int:
        """How many ids are held against replay (those whose messages were still fresh at the last check)."""
        return len(self._seen)
