"""Command authentication: HMAC-SHA256 over the message's canonical JSON.

The tag covers every field but ``auth`` itself, serialised with sorted keys and no whitespace
(:func:`signing_bytes`), so any client can compute it::

    body = json.dumps(doc_without_auth, sort_keys=True, separators=(",", ":"))
    mac  = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()

Keys are 32 random bytes, shared ground <-> satellite out of band, named by ``key_id``. Freshness
(``issued_utc`` window, one use per ``command_id``) is checked by the receiver, not here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import TypeVar

from link.messages import Auth, Command

C = TypeVar("C", bound=Command)


class AuthError(ValueError):
    """A command whose tag is missing, names an unknown key, or does not verify."""


def signing_bytes(command: Command) -> bytes:
    """The canonical bytes a tag is computed over."""
    doc = command.model_dump(mode="json", exclude={"auth"}, exclude_none=True)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign(command: C, key_id: str, key: bytes) -> C:
    """A copy of ``command`` carrying its HMAC-SHA256 tag under ``key_id``."""
    mac = hmac.new(key, signing_bytes(command), hashlib.sha256).hexdigest()
    return command.model_copy(update={"auth": Auth(key_id=key_id, mac=mac)})


def verify(command: Command, keys: Mapping[str, bytes]) -> None:
    """Return if ``command`` carries a valid tag from one of ``keys``; raise :class:`AuthError` otherwise."""
    if command.auth is None:
        raise AuthError("command is not signed and this satellite requires signed commands")
    key = keys.get(command.auth.key_id)
    if key is None:
        raise AuthError(f"unknown key_id {command.auth.key_id!r}")
    expected = hmac.new(key, signing_bytes(command), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, command.auth.mac):
        raise AuthError("bad command signature")


def load_key(text: str) -> bytes:
    """A key from its hex form (64 hex digits = 32 bytes)."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise AuthError("a command key is 64 hex digits") from None
    if len(key) < 16:
        raise AuthError("a command key must be at least 16 bytes")
    return key
