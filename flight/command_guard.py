"""The command guard: whether a request from the ground may be acted on (docs/security.md).

The single seam for authenticating ground traffic onboard: flightd's job intake, its commands and the
uplink receiver's upload begins all go through it. Two steps, each refusal an
:class:`link.auth.AuthError` whose text goes back on the wire and into the log:

1. :meth:`CommandGuard.open`, on the payload as it arrived. A signed payload (``ORS1``, link.envelope)
   must be addressed to this satellite, name an active key of the key ring, verify under it and
   carry a sequence number that key's anti-replay window has not accepted (:mod:`flight.authenticator`).
   The window then advances at once, and its new state goes to ``persist`` (the journal), so a
   verified request is never accepted twice, even across a reset, whatever is decided about it
   next. An unsigned payload passes only where the policy accepts its kind unsigned.
2. :meth:`CommandGuard.check`, on the decoded message: the signer's role must allow what the message
   asks (a job's priority within the key's cap; ``cancel``/``ack_result`` of its own jobs for a user
   key); commands and upload begins must be issued within ``window_s`` of the satellite clock
   (``security.command_window_s``, 600 s). An unsigned command or upload begin on a satellite that
   holds legacy HMAC keys (``security.command_keys``, link.auth) must carry a valid tag, and its
   command id is accepted once (remembered until it would fail the freshness check anyway).

With neither signing keys nor HMAC keys configured every request passes unchecked (a lab set-up;
flightd logs a warning at start).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from flight.antireplay import ReplayWindow
from flight.authenticator import RequestAuthenticator, SignedRequest
from flight.keyring import COMMAND, JOB, KINDS, KeyEntry, KeyRing
from link.auth import AuthError, verify

Persist = Callable[[str, ReplayWindow], Awaitable[object]]
"""Write one key's advanced window durably; the awaitable completes once it is committed."""


@dataclass(frozen=True)
class Admitted:
    """What :meth:`CommandGuard.open` let through: the unsigned body, who signed it (None: unsigned,
    admitted by policy), the signer's advanced window and its write (await it before acting; None
    when the caller asked to write the window itself, see :meth:`CommandGuard.open`)."""

    body: bytes | memoryview
    request: SignedRequest | None = None
    persisted: Awaitable[object] | None = None
    window: ReplayWindow | None = None

    @property
    def signer(self) -> KeyEntry | None:
        return None if self.request is None else self.request.signer


class CommandGuard:
    """Signatures, roles, anti-replay, freshness (see the module docstring).

    ``keys``: legacy HMAC key_id -> secret. ``window_s``: the freshness window, s. ``clock``: the
    satellite's UTC clock, s since the epoch. ``authenticator``: the Ed25519 key ring, windows and
    unsigned policy (None: no signing keys, everything unsigned). ``persist``: where advanced windows go.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        window_s: float,
        clock: Callable[[], float],
        *,
        authenticator: RequestAuthenticator | None = None,
        persist: Persist | None = None,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.keys = dict(keys)
        self.window_s = window_s
        self.clock = clock
        self.authenticator = authenticator
        self.persist = persist
        self._seen: dict[str, float] = {}  # legacy: command id -> the satellite time after which it is stale

    @property
    def enforcing(self) -> bool:
        """False when every request is accepted unsigned (no keys, no policy)."""
        return bool(self.keys) or self.unsigned_kinds() != frozenset(KINDS)

    @property
    def ring(self) -> KeyRing:
        return KeyRing() if self.authenticator is None else self.authenticator.ring

    def unsigned_kinds(self) -> frozenset[str]:
        """Request kinds accepted without an Ed25519 signature (the legacy tag may still be required)."""
        return frozenset(KINDS) if self.authenticator is None else self.authenticator.accept_unsigned

    def open(self, payload: bytes | memoryview, kind: str, *, write_window: bool = True) -> Admitted:
        """Step 1 (the module docstring) for a payload of ``kind`` (job, command, upload).

        ``write_window=False``: the caller journals the advanced window itself, in the transaction of
        what it does next (a job's intake: one commit, one fsync), or with :meth:`write_window` if it
        refuses the request."""
        if self.authenticator is None:
            return Admitted(payload)
        request = self.authenticator.open(payload, kind)
        if request is None:
            return Admitted(payload)
        window = self.authenticator.commit(request)
        admitted = Admitted(request.body, request, None, window)
        return self.write_window(admitted) if write_window else admitted

    def write_window(self, admitted: Admitted) -> Admitted:
        """Hand ``admitted``'s advanced window to ``persist``; the same request with the write to await."""
        if admitted.request is None or admitted.window is None or self.persist is None or admitted.persisted:
            return admitted
        persisted = self.persist(admitted.request.signer.fingerprint, admitted.window)
        return Admitted(admitted.body, admitted.request, persisted, admitted.window)

    def check(
        self,
        message: BaseModel,
        *,
        issued_utc: float | None,
        received: Mapping[str, object] | None = None,
        what: str = "command",
        kind: str = COMMAND,
        asks: str | None = None,
        once_id: str | None = None,
        admitted: Admitted | None = None,
        priority: int | None = None,
        owner: str | None = None,
    ) -> None:
        """Step 2: return if the decoded ``message`` may be acted on; AuthError with the reason otherwise.

        ``issued_utc``: when the ground issued it (UTC s; not checked for jobs). ``received``: the JSON
        document as it arrived (a legacy tag is checked over it). ``what`` names the message in reasons.
        ``kind``: job, command or upload; ``asks``: what the role must allow (``command:<action>``;
        default ``kind``). ``once_id``: a legacy command id accepted once. ``admitted``: what
        :meth:`open` returned (None: an unsigned message it was not shown). ``priority``: a job's.
        ``owner``: the key name that submitted the job a command is about.
        """
        request = None if admitted is None else admitted.request
        if request is not None:
            assert self.authenticator is not None
            self.authenticator.authorize(request, asks or kind, priority, owner)
        else:
            if kind not in self.unsigned_kinds():
                raise AuthError(f"{what} is not signed and this satellite requires signed {kind}s")
            if not self.keys or kind == JOB:
                return  # admitted unsigned by policy
            verify(message, self.keys, what=what, received=received)
        if kind == JOB:
            return
        now = self.clock()
        window = self.window_s
        if issued_utc is None:
            raise AuthError(f"{what} carries no issued_utc: it must be within the {window:.0f} s window")
        if abs(now - issued_utc) > window:
            raise AuthError(f"{what} issued_utc {issued_utc:.0f} is outside the {window:.0f} s window")
        if once_id is None or request is not None:
            return  # a signed request is accepted once by its key's window
        self._seen = {i: stale_after for i, stale_after in self._seen.items() if stale_after >= now}
        if once_id in self._seen:
            raise AuthError(f"{what} id {once_id} was already used (replay)")
        self._seen[once_id] = issued_utc + window

    def remembered(self) -> int:
        """How many legacy ids are held against replay (those whose messages were still fresh at the last check)."""
        return len(self._seen)

    def replace_ring(self, ring: KeyRing) -> None:
        """Use ``ring`` from now on (a key was added, rotated or revoked)."""
        if self.authenticator is None:
            raise AuthError("this satellite has no signing keys configured")
        self.authenticator.replace_ring(ring)
