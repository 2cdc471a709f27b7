"""Signed envelope ``ORS1``: an Ed25519 signature over the exact bytes of a ground -> satellite message.

A request (a job, a command, a model upload ``begin``) is encoded as usual by :mod:`link.codec` (a
JSON document or an ``ORB1`` frame with its binary tensor section) and then wrapped, unchanged::

    offset  size  field                      (integers little-endian, like ORB1)
    0       4     magic b"ORS1"
    4       8     key id: the first 8 bytes of SHA-256 over the signer's raw 32-byte public key
    12      8     sequence number, uint64, >= 1 (anti-replay, per key; see flight.antireplay)
    20      1     n: length of the destination satellite id
    21      n     destination satellite id, ASCII (link.messages.ID_PATTERN)
    21+n    m     body: the message exactly as it would be sent unsigned (JSON, or an ORB1 frame)
    21+n+m  64    Ed25519 signature (RFC 8032, pure Ed25519) over bytes [0, 21+n+m)

The signature is the last 64 bytes and covers everything before it, so a client in any language
signs the buffer it built and appends 64 bytes: no canonical re-serialisation, no JSON library
behaviour to imitate, and one flipped bit anywhere (header, JSON, tensor bytes) fails verification.
The destination satellite and the sequence number are inside the signed bytes: a message signed for
one satellite cannot be replayed to another that trusts the same key, and the counter cannot be
rewritten. An unsigned message starts with ``{`` (JSON) or ``ORB1``, never ``ORS1``, so both kinds
stay readable on the same topic; whether an unsigned one is accepted is the receiver's policy.

Errors are :class:`SignatureError` (a :class:`link.auth.AuthError`), with a reason fit for the wire.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from link.auth import AuthError
from link.messages import ID_PATTERN, is_identifier

MAGIC = b"ORS1"
KEY_ID_BYTES = 8
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
MAX_SEQUENCE = (1 << 64) - 1
_FIXED = struct.Struct("<4s8sQB")  # magic, key id, sequence number, satellite id length
MIN_ENVELOPE_BYTES = _FIXED.size + 1 + SIGNATURE_BYTES
"""The shortest envelope: a one-character satellite id and an empty body."""



class SignatureError(AuthError):
    """A signed envelope that is malformed, or whose signature does not verify."""


def key_id(public_key: bytes) -> bytes:
    """The 8-byte id of a raw 32-byte Ed25519 public key: SHA-256(public key)[:8]."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise SignatureError(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    return hashlib.sha256(public_key).digest()[:KEY_ID_BYTES]


def fingerprint(public_key: bytes) -> str:
    """:func:`key_id` as 16 hex digits: how keys are named in status, logs and key commands."""
    return key_id(public_key).hex()


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key of ``key``."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public_key(text: str) -> bytes:
    """A raw public key from its 64-hex-digit form; :class:`SignatureError` when malformed."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise SignatureError("an Ed25519 public key is 64 hex digits") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise SignatureError(f"an Ed25519 public key is 64 hex digits, got {len(raw) * 2}")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SignatureError("not a valid Ed25519 public key") from None
    return raw


def is_sealed(payload: bytes | memoryview) -> bool:
    """True when ``payload`` is an ``ORS1`` envelope (it may still be malformed)."""
    return bytes(payload[: len(MAGIC)]) == MAGIC


@dataclass(frozen=True)
class Envelope:
    """A parsed, not yet verified, ``ORS1`` envelope. ``signed``: the bytes the signature covers."""

    key_id: bytes
    sequence: int
    sat: str
    body: memoryview
    signature: bytes
    signed: memoryview

    @property
    def fingerprint(self) -> str:
        return self.key_id.hex()

    def verify(self, public_key: bytes | Ed25519PublicKey) -> None:
        """Return if the signature verifies under ``public_key``; :class:`SignatureError` otherwise."""
        key = public_key if isinstance(public_key, Ed25519PublicKey) else Ed25519PublicKey.from_public_bytes(public_key)
        try:
            key.verify(self.signature, bytes(self.signed))
        except InvalidSignature:
            raise SignatureError(f"bad signature (key {self.fingerprint}, sequence {self.sequence})") from None


def overhead(sat: str) -> int:
    """Bytes an envelope for satellite ``sat`` adds to its body (header and signature)."""
    return _FIXED.size + len(sat.encode("ascii")) + SIGNATURE_BYTES


def peek_body(payload: bytes | memoryview) -> bytes | memoryview:
    """Best-effort, unverified: the body of an envelope, or ``payload`` itself when it is not one (for
    naming the job or command a refusal is about, never for acting on). Only the layout is read: an
    envelope refused for its fields (sequence 0, a satellite id that is no identifier) still names
    its job, so the refusal reaches the sender (found by bench.fuzz); one too short for its own
    layout gives ``payload``."""
    if not is_sealed(payload) or len(payload) < MIN_ENVELOPE_BYTES:
        return payload
    view = memoryview(payload)
    body_start = _FIXED.size + view[_FIXED.size - 1]
    if body_start + SIGNATURE_BYTES > len(view):
        return payload
    return view[body_start : len(view) - SIGNATURE_BYTES]


def seal(body: bytes, private_key: Ed25519PrivateKey, sat: str, sequence: int) -> bytes:
    """``body`` (an encoded message) wrapped in an envelope for satellite ``sat``, signed by ``private_key``."""
    if not is_identifier(sat, topic_level=False):
        raise SignatureError(f"invalid satellite id {sat!r}: must match {ID_PATTERN}")
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise SignatureError(f"sequence number {sequence} is outside 1..2^64-1")
    sat_bytes = sat.encode("ascii")
    head = _FIXED.pack(MAGIC, key_id(public_bytes(private_key)), sequence, len(sat_bytes)) + sat_bytes
    signed = head + body
    return signed + private_key.sign(signed)


def open_envelope(payload: bytes | memoryview) -> Envelope:
    """Parse an ``ORS1`` envelope without verifying it; :class:`SignatureError` naming what is wrong."""
    view = memoryview(payload)
    if not is_sealed(view):
        raise SignatureError("message is not signed (no ORS1 envelope)")
    if len(view) < MIN_ENVELOPE_BYTES:
        raise SignatureError(f"signed envelope of {len(view)} bytes is shorter than the minimum {MIN_ENVELOPE_BYTES}")
    _, kid, sequence, n = _FIXED.unpack_from(view)
    body_start = _FIXED.size + n
    if body_start + SIGNATURE_BYTES > len(view):
        raise SignatureError(f"signed envelope names a {n}-byte satellite id but only {len(view)} bytes arrived")
    try:
        sat = bytes(view[_FIXED.size : body_start]).decode("ascii")
    except UnicodeDecodeError:
        raise SignatureError("signed envelope's satellite id is not ASCII") from None
    if not is_identifier(sat, topic_level=False):
        raise SignatureError(f"signed envelope's satellite id {sat!r} does not match {ID_PATTERN}")
    if sequence == 0:
        raise SignatureError("signed envelope carries sequence number 0 (the first is 1)")
    end = len(view) - SIGNATURE_BYTES
    return Envelope(
        key_id=bytes(kid),
        sequence=sequence,
        sat=sat,
        body=view[body_start:end],
        signature=bytes(view[end:]),
        signed=view[:end],
    )
