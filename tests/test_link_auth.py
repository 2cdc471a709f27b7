"""link.auth against the recipe of docs/icd.md "Command authentication", computed here with hmac/hashlib:

    mac = HMAC-SHA256(key, json.dumps(doc_without_auth, sort_keys=True, separators=(",", ":"))).hexdigest()
    (fields whose value is null left out)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from link.auth import AuthError, load_key, sign, signing_bytes, verify
from link.codec import decode, encode, peek_header
from link.messages import Auth, CancelJob, Command, JobState, JobStateEvent, ListJobs, Ping

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def documented_mac(doc: dict[str, Any], key: bytes) -> str:
    """The tag as a client in any language computes it from docs/icd.md."""
    body = {k: v for k, v in doc.items() if k != "auth" and v is not None}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def hand_written_cancel() -> dict[str, Any]:
    return {"schema_version": 1, "command_id": "cmd-42", "issued_utc": 1700000000.25,
            "body": {"action": "cancel", "job_id": "job-7"}}


def test_sign_equals_documented_recipe() -> None:
    doc = hand_written_cancel()
    command = Command.model_validate(doc)
    signed = sign(command, "ground", KEY)
    assert signed.auth == Auth(key_id="ground", mac=documented_mac(doc, KEY))
    assert command.auth is None  # sign returns a copy
    # the canonical bytes, spelled out
    assert signing_bytes(command) == (
        b'{"body":{"action":"cancel","job_id":"job-7"},"command_id":"cmd-42",'
        b'"issued_utc":1700000000.25,"schema_version":1}'
    )


def test_hand_signed_json_command_verifies_after_decoding() -> None:
    doc = hand_written_cancel()
    doc["auth"] = {"key_id": "ground", "mac": documented_mac(doc, KEY)}
    command = decode(json.dumps(doc).encode(), Command).message
    verify(command, {"ground": KEY})


def test_signed_command_survives_the_wire() -> None:
    signed = sign(Command(command_id="c1", issued_utc=1.5, body=ListJobs(limit=7)), "k1", KEY)
    verify(decode(encode(signed), Command).message, {"k1": KEY, "k2": OTHER_KEY})


def test_hand_signed_command_with_defaults_omitted_verifies() -> None:
    doc = {"schema_version": 1, "command_id": "cmd-43", "issued_utc": 1700000000,
           "body": {"action": "list_jobs"}}
    doc["auth"] = {"key_id": "ground", "mac": documented_mac(doc, KEY)}
    payload = json.dumps(doc).encode()
    verify(decode(payload, Command).message, {"ground": KEY}, received=peek_header(payload))
    # and the tag really is checked over what was received: change a byte of it and it fails
    tampered = json.loads(payload)
    tampered["command_id"] = "cmd-44"
    with pytest.raises(AuthError, match="bad command signature"):
        verify(decode(json.dumps(tampered).encode(), Command).message, {"ground": KEY}, received=tampered)


def test_forged_mac_is_refused() -> None:
    signed = sign(Command(command_id="c2", issued_utc=2.0, body=Ping()), "ground", KEY)
    assert signed.auth is not None
    mac = signed.auth.mac
    forged = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    with pytest.raises(AuthError, match=r"^bad command signature$"):
        verify(signed.model_copy(update={"auth": Auth(key_id="ground", mac=forged)}), {"ground": KEY})


def test_tampered_body_is_refused() -> None:
    signed = sign(Command(command_id="c3", issued_utc=3.0, body=CancelJob(job_id="a")), "ground", KEY)
    tampered = signed.model_copy(update={"body": CancelJob(job_id="b")})
    with pytest.raises(AuthError, match="bad command signature"):
        verify(tampered, {"ground": KEY})
    later = signed.model_copy(update={"issued_utc": 4.0})
    with pytest.raises(AuthError, match="bad command signature"):
        verify(later, {"ground": KEY})


def test_wrong_key_and_unknown_key_id_are_refused() -> None:
    signed = sign(Command(command_id="c4", issued_utc=4.0, body=Ping()), "ground", OTHER_KEY)
    with pytest.raises(AuthError, match="bad command signature"):
        verify(signed, {"ground": KEY})
    with pytest.raises(AuthError, match="unknown key_id 'ground'"):
        verify(signed, {"ops": OTHER_KEY})


def test_unsigned_is_refused_with_what_in_the_reason() -> None:
    command = Command(command_id="c5", issued_utc=5.0, body=Ping())
    with pytest.raises(AuthError, match="command is not signed and this satellite requires signed commands"):
        verify(command, {"ground": KEY})
    with pytest.raises(AuthError, match="upload is not signed"):
        verify(command, {"ground": KEY}, what="upload")


def test_message_without_auth_field_cannot_be_signed() -> None:
    event = JobStateEvent(job_id="j", state=JobState.QUEUED, at_utc=0.0)
    with pytest.raises(TypeError, match="JobStateEvent has no auth field"):
        sign(event, "ground", KEY)


def test_load_key() -> None:
    assert load_key(" " + KEY.hex() + "\n") == KEY
    with pytest.raises(AuthError, match="64 hex digits"):
        load_key("zz" * 32)
    with pytest.raises(AuthError, match="at least 16 bytes"):
        load_key("00" * 8)
