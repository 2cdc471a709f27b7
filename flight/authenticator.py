"""Who signed a request, whether they may ask for it, and whether it was seen before.

:class:`RequestAuthenticator` puts together the signed envelope (:mod:`link.envelope`), the key ring
(:mod:`flight.keyring`) and the per-key anti-replay windows (:mod:`flight.antireplay`). For each
ground -> satellite payload, in this order:

1. :meth:`~RequestAuthenticator.open`: an unsigned payload passes only where the policy accepts its
   kind unsigned; a signed one must be addressed to this satellite, name an active key, verify under
   it, and carry a sequence number the key's window has not accepted. Nothing changes yet.
2. the caller decodes the body, then :meth:`~RequestAuthenticator.authorize` checks the signer's
   role for what the message asks (a job's priority against the key's cap);
3. :meth:`~RequestAuthenticator.commit` advances the window, checking it again (two copies of one
   request may be in flight at once), and returns the window the caller persists before acting.

Refusals are :class:`link.auth.AuthError` with the reason for the wire and the log. Plain data and
arithmetic: no clock, no disk, no broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flight.antireplay import DEFAULT_WINDOW, ReplayError, ReplayWindow
from flight.keyring import KINDS, KeyEntry, KeyRing
from link.auth import AuthError
from link.envelope import is_sealed, open_envelope


@dataclass(frozen=True)
class SignedRequest:
    """A payload whose signature verified: its signer, sequence number and the unsigned body."""

    signer: KeyEntry
    sequence: int
    body: memoryview

    def describe(self) -> str:
        return f"{self.signer.describe()}, sequence {self.sequence}"


class RequestAuthenticator:
    """The onboard check of signed requests (see the module docstring).

    ``sat``: this satellite's id. ``accept_unsigned``: the kinds (:data:`flight.keyring.KINDS`) accepted without a
    signature. ``windows``: the persisted window of each key fingerprint; a key without one starts
    empty with ``window_size``.
    """

    def __init__(
        self,
        ring: KeyRing,
        sat: str,
        *,
        windows: Mapping[str, ReplayWindow] | None = None,
        window_size: int = DEFAULT_WINDOW,
        accept_unsigned: Iterable[str] = (),
    ) -> None:
        unknown = set(accept_unsigned) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown request kinds {sorted(unknown)}: use {', '.join(KINDS)}")
        self.ring = ring
        self.sat = sat
        self.window_size = window_size
        self.accept_unsigned = frozenset(accept_unsigned)
        self.windows: dict[str, ReplayWindow] = {
            fp: w if w.size == window_size else w.resized(window_size) for fp, w in (windows or {}).items()
        }

    def window(self, key_fingerprint: str) -> ReplayWindow:
        return self.windows.get(key_fingerprint) or ReplayWindow(size=self.window_size)

    def open(self, payload: bytes | memoryview, kind: str) -> SignedRequest | None:
        """The verified request in ``payload``, or None for an unsigned payload the policy accepts;
        :class:`link.auth.AuthError` naming the reason otherwise. Changes nothing."""
        if not is_sealed(payload):
            if kind in self.accept_unsigned:
                return None
            raise AuthError(f"{kind} is not signed and this satellite requires signed {kind}s")
        envelope = open_envelope(payload)
        if envelope.sat != self.sat:
            raise AuthError(f"{kind} is addressed to satellite {envelope.sat!r}, this is {self.sat!r}")
        signer = self.ring.signer(envelope.fingerprint)
        envelope.verify(signer.public_key)
        reason = self.window(signer.fingerprint).refusal(envelope.sequence)
        if reason is not None:
            raise ReplayError(f"{kind} from {signer.describe()}: {reason}")
        return SignedRequest(signer, envelope.sequence, envelope.body)

    def authorize(
        self, request: SignedRequest | None, what: str, priority: int | None = None, owner: str | None = None
    ) -> None:
        """Return if the signer may ask for ``what`` (``job``, ``upload`` or ``command:<action>``) at
        ``priority``, about a job submitted by ``owner`` (see :meth:`flight.keyring.KeyRing.authorize`);
        unsigned requests were admitted by policy in :meth:`open`."""
        if request is not None:
            self.ring.authorize(request.signer, what, priority, owner)

    def commit(self, request: SignedRequest) -> ReplayWindow:
        """Advance the signer's window past ``request`` and return it (to persist before acting);
        :class:`flight.antireplay.ReplayError` if another copy was committed since :meth:`open`."""
        fp = request.signer.fingerprint
        try:
            window = self.window(fp).accept(request.sequence)
        except ReplayError as exc:
            raise ReplayError(f"request from {request.signer.describe()}: {exc}") from None
        self.windows[fp] = window
        return window

    def replace_ring(self, ring: KeyRing) -> None:
        """Use ``ring`` from now on (after a key was added, rotated or revoked); windows stay."""
        self.ring = ring
