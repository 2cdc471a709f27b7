"""flight.command_guard.CommandGuard with signing keys: open (signature, window, persistence), check
(role, freshness), the unsigned policy and the legacy HMAC tag side by side (no broker)."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flight.antireplay import ReplayError, ReplayWindow
from flight.authenticator import RequestAuthenticator
from flight.command_guard import CommandGuard
from flight.keyring import COMMAND, JOB, UPLOAD, KeyEntry, KeyRefused, KeyRing, command_request
from link.auth import AuthError, sign
from link.codec import decode, encode
from link.envelope import public_bytes, seal
from link.messages import ActivateModel, Command, Ping, Role

OPS = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
LAB = Ed25519PrivateKey.from_private_bytes(bytes([8]) * 32)
HMAC = bytes(range(32))
NOW = 50_000.0


def guard(accept_unsigned: tuple[str, ...] = (), hmac: bool = False) -> tuple[CommandGuard, list[tuple[str, int]]]:
    ring = KeyRing.of([KeyEntry("ops", Role.OPERATOR, public_bytes(OPS)),
                       KeyEntry("lab", Role.USER, public_bytes(LAB))])
    persisted: list[tuple[str, int]] = []

    def record(fp: str, window: ReplayWindow) -> asyncio.Future[None]:
        persisted.append((fp, window.top))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    auth = RequestAuthenticator(ring, "sat1", accept_unsigned=accept_unsigned)
    g = CommandGuard({"ground": HMAC} if hmac else {}, 600.0, lambda: NOW, authenticator=auth, persist=record)
    return g, persisted


def ping(command_id: str, issued_utc: float = NOW) -> bytes:
    return encode(Command(command_id=command_id, issued_utc=issued_utc, body=Ping()))


async def test_open_advances_and_persists_the_window_then_check_applies_the_role() -> None:
    g, persisted = guard()
    admitted = g.open(seal(ping("c1"), OPS, "sat1", 5), COMMAND)
    assert persisted == [(admitted.signer.fingerprint, 5)]  # type: ignore[union-attr]
    await admitted.persisted  # type: ignore[misc]
    message = decode(admitted.body, Command).message
    g.check(message, issued_utc=message.issued_utc, admitted=admitted, asks=command_request("ping"))
    with pytest.raises(ReplayError, match="already accepted"):
        g.open(seal(ping("c1"), OPS, "sat1", 5), COMMAND)
    user = g.open(seal(encode(Command(command_id="c2", issued_utc=NOW, body=ActivateModel(name="m", version="1"))),
                       LAB, "sat1", 1), COMMAND)
    with pytest.raises(KeyRefused, match="may not sign command activate_model"):
        g.check(decode(user.body, Command).message, issued_utc=NOW, admitted=user,
                asks=command_request("activate_model"))
    assert len(persisted) == 2  # the refused request's window advanced too: it cannot come back later


async def test_signed_requests_still_need_a_fresh_issued_utc_but_no_once_id() -> None:
    g, _ = guard()
    stale = g.open(seal(ping("c1", NOW - 601), OPS, "sat1", 1), COMMAND)
    with pytest.raises(AuthError, match="outside the 600 s window"):
        g.check(decode(stale.body, Command).message, issued_utc=NOW - 601, admitted=stale, once_id="c1")
    fresh = g.open(seal(ping("c1"), OPS, "sat1", 2), COMMAND)  # same command id, new sequence number
    g.check(decode(fresh.body, Command).message, issued_utc=NOW, admitted=fresh, once_id="c1")
    assert g.remembered() == 0


async def test_unsigned_policy_and_the_legacy_tag() -> None:
    strict, _ = guard()
    assert strict.enforcing
    with pytest.raises(AuthError, match="command is not signed"):
        strict.open(ping("c1"), COMMAND)
    with pytest.raises(AuthError, match="model upload is not signed and this satellite requires signed uploads"):
        strict.check(Command(command_id="b", issued_utc=NOW, body=Ping()), issued_utc=NOW, what="model upload",
                     kind=UPLOAD)
    mixed, _ = guard(accept_unsigned=(JOB, COMMAND), hmac=True)
    admitted = mixed.open(ping("c1"), COMMAND)
    assert admitted.request is None
    unsigned = decode(admitted.body, Command).message
    with pytest.raises(AuthError, match="command is not signed"):  # HMAC keys configured: the tag is required
        mixed.check(unsigned, issued_utc=NOW, once_id="c1", admitted=admitted)
    tagged = sign(unsigned, "ground", HMAC)
    mixed.check(tagged, issued_utc=NOW, once_id="c1", admitted=admitted)
    with pytest.raises(AuthError, match="already used"):
        mixed.check(tagged, issued_utc=NOW, once_id="c1", admitted=admitted)
    job_admitted = mixed.open(b'{"job_id": "j"}', JOB)  # jobs: unsigned by policy, no tag, no freshness
    mixed.check(Command(command_id="x", issued_utc=0.0, body=Ping()), issued_utc=None, kind=JOB,
                admitted=job_admitted)
    lab_only, _ = guard(accept_unsigned=(JOB, COMMAND, UPLOAD))
    assert not lab_only.enforcing
