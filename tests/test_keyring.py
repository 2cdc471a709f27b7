"""The satellite's key ring (flight.keyring): roles, priority caps, add / rotate / revoke, persistence."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flight.keyring import JOB, UPLOAD, KeyEntry, KeyRefused, KeyRing, command_request
from link.envelope import fingerprint, public_bytes
from link.messages import Role


def pub(seed: int) -> bytes:
    return public_bytes(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


OPS = KeyEntry("ops", Role.OPERATOR, pub(1), added_utc=100.0)
USER = KeyEntry.parse("lab", "user", pub(2).hex(), added_utc=100.0)


def ring() -> KeyRing:
    return KeyRing.of([OPS, USER])


def test_operator_may_do_everything_user_only_jobs_and_reads() -> None:
    r = ring()
    for request in (JOB, UPLOAD, command_request("activate_model"), command_request("add_key")):
        r.authorize(OPS, request, priority=9)
    r.authorize(USER, JOB, priority=5)
    r.authorize(USER, command_request("list_jobs"))
    with pytest.raises(KeyRefused, match=r"\(lab, user\) may not sign command activate_model: role user lacks it"):
        r.authorize(USER, command_request("activate_model"))
    r.authorize(USER, command_request("cancel"), owner="lab")
    r.authorize(USER, command_request("ack_result"), owner="lab")
    with pytest.raises(KeyRefused, match="may command ack_result only its own jobs, not ops's"):
        r.authorize(USER, command_request("ack_result"), owner="ops")
    with pytest.raises(KeyRefused, match="only its own jobs, not another key's"):
        r.authorize(USER, command_request("cancel"), owner=None)
    r.authorize(OPS, command_request("cancel"), owner="lab")
    with pytest.raises(KeyRefused, match="may not sign upload"):
        r.authorize(USER, UPLOAD)
    with pytest.raises(KeyRefused, match="up to priority 5, not 9"):
        r.authorize(USER, JOB, priority=9)


def test_signer_lookup_names_unknown_and_revoked_keys() -> None:
    r = ring()
    assert r.signer(OPS.fingerprint) is OPS
    with pytest.raises(KeyRefused, match=f"unknown signing key {fingerprint(pub(9))}"):
        r.signer(fingerprint(pub(9)))
    revoked = r.revoke(USER.fingerprint, at_utc=200.0)
    with pytest.raises(KeyRefused, match=r"\(lab, user\) was revoked"):
        revoked.signer(USER.fingerprint)
    assert r.signer(USER.fingerprint) is USER  # the old ring is unchanged


def test_rotation_keeps_name_role_and_cap_and_revokes_the_old_key() -> None:
    r = ring().rotate(USER.fingerprint, pub(3), at_utc=300.0)
    new = r.signer(fingerprint(pub(3)))
    assert (new.name, new.role, new.priority_cap, new.added_utc) == ("lab", Role.USER, 5, 300.0)
    old = r.entries[USER.fingerprint]
    assert not old.active and old.replaced_by == new.fingerprint
    with pytest.raises(KeyRefused, match="revoked"):
        r.signer(USER.fingerprint)
    # A revoked key cannot come back, neither by add nor by rotation onto it.
    with pytest.raises(KeyRefused, match="is a revoked key"):
        r.add(KeyEntry("lab2", Role.USER, pub(2)))
    with pytest.raises(KeyRefused, match="is a revoked key"):
        r.rotate(new.fingerprint, pub(2), at_utc=400.0)


def test_the_last_operator_key_cannot_be_revoked_but_can_be_rotated() -> None:
    r = ring()
    with pytest.raises(KeyRefused, match="last active operator key"):
        r.revoke(OPS.fingerprint, at_utc=1.0)
    rotated = r.rotate(OPS.fingerprint, pub(4), at_utc=2.0)
    assert [e.name for e in rotated.active if e.role is Role.OPERATOR] == ["ops"]
    second = r.add(KeyEntry("ops2", Role.OPERATOR, pub(5)))
    assert not second.revoke(OPS.fingerprint, at_utc=3.0).entries[OPS.fingerprint].active


def test_add_refuses_duplicates_and_bad_input() -> None:
    r = ring()
    with pytest.raises(KeyRefused, match="already known"):
        r.add(KeyEntry("other", Role.USER, pub(1)))
    with pytest.raises(KeyRefused, match="name 'lab' is in use"):
        r.add(KeyEntry("lab", Role.USER, pub(6)))
    with pytest.raises(KeyRefused, match="unknown role 'admin'"):
        KeyEntry.parse("x", "admin", pub(6).hex())
    with pytest.raises(KeyRefused, match="priority cap 10"):
        KeyEntry.parse("x", "user", pub(6).hex(), priority_cap=10)
    with pytest.raises(KeyRefused, match="invalid key name"):
        KeyEntry.parse("a/b", "user", pub(6).hex())


def test_records_round_trip_and_summary_shows_fingerprints_only() -> None:
    r = ring().rotate(USER.fingerprint, pub(3), at_utc=300.0)
    again = KeyRing.from_records(r.to_records())
    assert again == r
    summary = again.summary()
    assert [(s["name"], s["active"]) for s in summary] == [("lab", True), ("ops", True), ("lab", False)]
    assert summary[0] == {"fingerprint": fingerprint(pub(3)), "name": "lab", "role": "user", "active": True,
                          "priority_cap": 5}
    assert all(pub(2).hex() not in str(s) for s in summary)
