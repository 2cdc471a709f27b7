"""Anti-replay window per signing key: a sequence number is accepted once, and never far behind.

The sender numbers its messages per key (``link.envelope``, 1, 2, 3, ...). The receiver keeps the
highest accepted number ``top`` and a bitmap of which of the ``size`` numbers ending at ``top`` it
accepted. A number is accepted when it is above ``top`` (the window slides up), or inside the window
and not yet seen (a message overtaken in flight); at or below ``top - size`` it is refused. The state
is a pair of integers, persisted by the caller after every accepted message and before acting on it,
so a message refused before a restart is refused after it as well.

Sources: CCSDS 355.0-B-2, Space Data Link Security Protocol (2022), anti-replay processing: a per-SA
anti-replay sequence number (ARSN) checked against the stored one within a window (ARSNW), updated
only after the frame verified. NASA CryptoLib (src/core/crypto.c, ``Crypto_window``) and Yamcs
(``org.yamcs.security.sdls.IvSeqNum.verifyInWindow``, persisted in the MementoDb by
``SecurityAssociationAes256Gcm128.persistSeqNum``) accept only numbers in ``(stored, stored + W]``:
a forward window, and nothing overtaken. Here the window looks back instead, as IPsec ESP does
(RFC 4303 section 3.4.3 and appendix A, default 64): over MQTT two ground processes signing with one
key may overtake each other by a few messages, and since only the key's holder can produce a
verifying number, a jump forward is never forged (it is an operator's choice, e.g. a counter
re-seeded from the clock after the ground lost its state).

Everything here is pure: plain data in, plain data out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from link.auth import AuthError

DEFAULT_WINDOW = 64
"""Numbers accepted out of order behind the highest one (RFC 4303's recommended default)."""
MAX_WINDOW = 4096


class ReplayError(AuthError):
    """A sequence number that was accepted before, or that lies at or behind the window (an
    :class:`link.auth.AuthError`: its text is the refusal sent back to the ground)."""


@dataclass(frozen=True)
class ReplayWindow:
    """Accepted sequence numbers of one key. ``top``: the highest accepted (0: none yet); bit ``i``
    of ``seen`` is set when ``top - i`` was accepted; ``size``: how far behind ``top`` a number may be.
    """

    top: int = 0
    seen: int = 0
    size: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_WINDOW:
            raise ValueError(f"anti-replay window size {self.size} is outside 1..{MAX_WINDOW}")
        if self.top < 0 or self.seen < 0 or self.seen >> self.size:
            raise ValueError(f"inconsistent anti-replay window top={self.top} seen={self.seen:#x} size={self.size}")

    @property
    def floor(self) -> int:
        """Numbers at or below this are refused (``top - size``, at least 0)."""
        return max(self.top - self.size, 0)

    def refusal(self, sequence: int) -> str | None:
        """Why ``sequence`` would be refused, or None when it is new."""
        if sequence <= 0:
            return f"sequence number {sequence} is not positive"
        if sequence > self.top:
            return None
        if sequence <= self.floor:
            return (
                f"sequence number {sequence} is at or behind the anti-replay window "
                f"(highest accepted {self.top}, window {self.size}): replay or stale message"
            )
        if self.seen >> (self.top - sequence) & 1:
            return f"sequence number {sequence} was already accepted (replay)"
        return None

    def accept(self, sequence: int) -> ReplayWindow:
        """The window after accepting ``sequence``; :class:`ReplayError` with the reason when refused."""
        reason = self.refusal(sequence)
        if reason is not None:
            raise ReplayError(reason)
        mask = (1 << self.size) - 1
        if sequence > self.top:
            shift = sequence - self.top
            seen = ((self.seen << shift) | 1) & mask if shift < self.size else 1
            return ReplayWindow(sequence, seen, self.size)
        return ReplayWindow(self.top, self.seen | 1 << (self.top - sequence), self.size)

    def to_record(self) -> dict[str, Any]:
        """Plain data for the journal: ``top`` and ``seen`` as decimal strings (they exceed SQLite's int64)."""
        return {"top": str(self.top), "seen": str(self.seen), "size": self.size}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ReplayWindow:
        """Inverse of :meth:`to_record`; ValueError when the record is inconsistent."""
        return cls(int(record["top"]), int(record["seen"]), int(record["size"]))

    def resized(self, size: int) -> ReplayWindow:
        """The same accepted numbers under another window size (shrinking forgets the oldest)."""
        return ReplayWindow(self.top, self.seen & ((1 << size) - 1), size)
