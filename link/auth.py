"""Command (and model upload) authentication: HMAC-SHA256 over the message's canonical JSON.

The tag covers the JSON document as sent, every field but ``auth`` itself, serialised with sorted
keys and no whitespace (:func:`canonical_bytes`), so any client can compute it over what it sends::

    body = json.dumps(doc_without_auth, sort_keys=True, separators=(",", ":"))
    mac  = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()

The receiver checks the tag over the document it received (not over its own re-serialisation, which
would fill in defaults the sender left out), so a client need not write optional fields.

Keys are 32 random bytes, shared ground <-> satellite out of band, named by ``key_id``. Freshness
(``issued_utc`` window, one use per ``command_id``) is checked onboard by
``flight.command_guard.CommandGuard``, which calls :func:`verify` first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel

from link.messages import Auth

S = TypeVar("S", bound=BaseModel)


class AuthError(ValueError):
    """A command whose tag is missing, names an unknown key, or does not verify."""


def _check_signable(message: BaseModel) -> None:
    if "auth" not in type(message).model_fields:
        raise TypeError(f"{type(message).__name__} has no auth field and cannot be signed")


def canonical_bytes(doc: Mapping[str, object]) -> bytes:
    """The bytes a tag is computed over: the document without ``auth``, sorted keys, no spaces."""
    body = {k: v for k, v in doc.items() if k != "auth"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def signing_bytes(message: BaseModel) -> bytes:
    """:func:`canonical_bytes` of ``message`` as :func:`link.codec.encode` sends it (None fields left out)."""
    return canonical_bytes(message.model_dump(mode="json", exclude_none=True))


def sign(message: S, key_id: str, key: bytes) -> S:
    """A copy of ``message`` (a Command, or any message with an ``auth`` field) tagged under ``key_id``."""
    _check_signable(message)
    mac = hmac.new(key, signing_bytes(message), hashlib.sha256).hexdigest()
    return message.model_copy(update={"auth": Auth(key_id=key_id, mac=mac)})


def verify(
    message: BaseModel,
    keys: Mapping[str, bytes],
    *,
    what: str = "command",
    received: Mapping[str, object] | None = None,
) -> None:
    """Return if ``message`` carries a valid tag from one of ``keys``; raise :class:`AuthError` otherwise.

    ``received``: the JSON document as it arrived (its header, for a framed payload); the tag is
    checked over it. Without it, over ``message`` re-serialised. ``what`` names the message in the
    reasons ("command is not signed ...", "bad command signature").
    """
    _check_signable(message)
    auth = getattr(message, "auth", None)
    if not isinstance(auth, Auth):
        raise AuthError(f"{what} is not signed and this satellite requires signed {what}s")
    key = keys.get(auth.key_id)
    if key is None:
        raise AuthError(f"unknown key_id {auth.key_id!r}")
    body = canonical_bytes(received) if received is not None else signing_bytes(message)
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth.mac):
        raise AuthError(f"bad {what} signature")


def load_key(text: str) -> bytes:
    """A key from its hex form (64 hex digits = 32 bytes)."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise AuthError("a command key is 64 hex digits") from None
    if len(key) < 16:
        raise AuthError("a command key must be at least 16 bytes")
    return key
