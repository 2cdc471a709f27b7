"""flight.authenticator: envelope + key ring + anti-replay windows, as the command guard will use them."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flight.antireplay import ReplayError, ReplayWindow
from flight.authenticator import RequestAuthenticator
from flight.keyring import JOB, UPLOAD, KeyEntry, KeyRefused, KeyRing, command_request
from link.auth import AuthError
from link.envelope import SignatureError, fingerprint, public_bytes, seal
from link.messages import Role

OPS_KEY = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)
USER_KEY = Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32)
STRANGER = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
BODY = b'{"schema_version":1}'


def ring() -> KeyRing:
    return KeyRing.of([
        KeyEntry("ops", Role.OPERATOR, public_bytes(OPS_KEY)),
        KeyEntry("lab", Role.USER, public_bytes(USER_KEY), priority_cap=4),
    ])


def auth(**kwargs: object) -> RequestAuthenticator:
    return RequestAuthenticator(ring(), "sat1", **kwargs)  # type: ignore[arg-type]


def test_a_signed_request_opens_authorizes_and_commits_once() -> None:
    a = auth()
    payload = seal(BODY, OPS_KEY, "sat1", 10)
    request = a.open(payload, "command")
    assert request is not None and bytes(request.body) == BODY and request.signer.name == "ops"
    a.authorize(request, command_request("activate_model"))
    assert a.commit(request).top == 10
    with pytest.raises(ReplayError, match=r"command from key \w+ \(ops, operator\): sequence number 10 was already"):
        a.open(payload, "command")
    # Two copies opened before either committed: the second commit is refused.
    late = seal(BODY, OPS_KEY, "sat1", 9)
    first, second = a.open(late, "job"), a.open(late, "job")
    assert first is not None and second is not None
    a.commit(first)
    with pytest.raises(ReplayError, match="already accepted"):
        a.commit(second)


def test_refusals_name_the_reason() -> None:
    a = auth()
    with pytest.raises(AuthError, match="job is not signed and this satellite requires signed jobs"):
        a.open(BODY, "job")
    with pytest.raises(AuthError, match="addressed to satellite 'sat2', this is 'sat1'"):
        a.open(seal(BODY, OPS_KEY, "sat2", 1), "job")
    with pytest.raises(KeyRefused, match=f"unknown signing key {fingerprint(public_bytes(STRANGER))}"):
        a.open(seal(BODY, STRANGER, "sat1", 1), "job")
    forged = bytearray(seal(BODY, OPS_KEY, "sat1", 1))
    forged[-1] ^= 0x80
    with pytest.raises(SignatureError, match="bad signature"):
        a.open(bytes(forged), "command")
    user = a.open(seal(BODY, USER_KEY, "sat1", 1), "job")
    with pytest.raises(KeyRefused, match="up to priority 4, not 7"):
        a.authorize(user, JOB, priority=7)
    with pytest.raises(KeyRefused, match="may not sign upload"):
        a.authorize(user, UPLOAD)
    revoked = RequestAuthenticator(ring().revoke(fingerprint(public_bytes(USER_KEY)), at_utc=5.0), "sat1")
    with pytest.raises(KeyRefused, match="was revoked"):
        revoked.open(seal(BODY, USER_KEY, "sat1", 2), "job")


def test_unsigned_policy_and_persisted_windows() -> None:
    a = auth(accept_unsigned=["job"])
    assert a.open(BODY, "job") is None
    a.authorize(None, JOB, priority=9)  # admitted by policy: no role to check
    with pytest.raises(AuthError, match="command is not signed"):
        a.open(BODY, "command")
    with pytest.raises(ValueError, match="unknown request kinds"):
        auth(accept_unsigned=["jobs"])
    ops = fingerprint(public_bytes(OPS_KEY))
    restarted = auth(windows={ops: ReplayWindow().accept(100)}, window_size=8)
    assert restarted.window(ops).size == 8
    with pytest.raises(ReplayError, match="behind the anti-replay window"):
        restarted.open(seal(BODY, OPS_KEY, "sat1", 92), "command")
    assert restarted.open(seal(BODY, OPS_KEY, "sat1", 93), "command") is not None


def test_a_rotated_key_starts_a_fresh_window_and_the_old_one_is_refused() -> None:
    a = auth()
    a.commit(a.open(seal(BODY, USER_KEY, "sat1", 50), "job"))  # type: ignore[arg-type]
    new_key = Ed25519PrivateKey.from_private_bytes(bytes([4]) * 32)
    a.replace_ring(a.ring.rotate(fingerprint(public_bytes(USER_KEY)), public_bytes(new_key), at_utc=1.0))
    request = a.open(seal(BODY, new_key, "sat1", 1), "job")
    assert request is not None and request.signer.name == "lab" and request.signer.priority_cap == 4
    with pytest.raises(KeyRefused, match="revoked"):
        a.open(seal(BODY, USER_KEY, "sat1", 51), "job")
