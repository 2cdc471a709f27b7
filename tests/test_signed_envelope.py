"""The ORS1 signed envelope (link.envelope) and the ground's keys and counters (ground.signer)."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ground.cli import main
from ground.signer import KeyFileError, SequenceCounter, generate_key, load_signer, read_public_key
from link.codec import decode, encode, pack_tensors, unpack_tensors
from link.envelope import (
    MIN_ENVELOPE_BYTES,
    SignatureError,
    fingerprint,
    is_sealed,
    key_id,
    load_public_key,
    open_envelope,
    peek_body,
    public_bytes,
    seal,
)
from link.messages import JobRequest
from tests.support import REPO

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def framed_job() -> bytes:
    x = np.arange(3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8)
    tensors, binary = pack_tensors({"x": x})
    return encode(JobRequest(job_id="j1", model="m", inputs=tensors), binary)


def test_layout_is_the_documented_one() -> None:
    body = b'{"schema_version":1}'
    env = seal(body, KEY, "sat1", 7)
    assert env[:4] == b"ORS1"
    assert env[4:12] == key_id(public_bytes(KEY))
    assert struct.unpack_from("<Q", env, 12) == (7,)
    assert env[20] == 4 and env[21:25] == b"sat1"
    assert env[25:-64] == body
    # The signature covers exactly the bytes before it (a C client signs its buffer and appends).
    KEY.public_key().verify(env[-64:], env[:-64])
    opened = open_envelope(env)
    assert (opened.sat, opened.sequence, bytes(opened.body)) == ("sat1", 7, body)
    opened.verify(public_bytes(KEY))


def test_framed_job_round_trips_and_its_tensor_bytes_are_covered() -> None:
    body = framed_job()
    env = seal(body, KEY, "sat1", 1)
    opened = open_envelope(env)
    opened.verify(public_bytes(KEY))
    decoded = decode(opened.body, JobRequest)
    x = unpack_tensors(decoded.message.inputs, decoded.binary)["x"]
    assert x.shape == (1, 3, 8, 8) and float(x[0, 2, 7, 7]) == 191.0
    # One flipped bit in the tensor section (the last bytes of the body) fails verification.
    tampered = bytearray(env)
    tampered[-64 - 1] ^= 0x01
    with pytest.raises(SignatureError, match="bad signature"):
        open_envelope(bytes(tampered)).verify(public_bytes(KEY))


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300), bit=st.integers(min_value=0))
def test_any_single_flipped_bit_is_refused(body: bytes, bit: int) -> None:
    env = bytearray(seal(body, KEY, "sat-9", 12345))
    bit %= len(env) * 8
    env[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SignatureError):
        opened = open_envelope(bytes(env))
        opened.verify(public_bytes(KEY))


def test_wrong_key_and_malformed_envelopes_have_reasons() -> None:
    env = seal(b"{}", KEY, "sat1", 3)
    with pytest.raises(SignatureError, match="bad signature"):
        open_envelope(env).verify(public_bytes(OTHER))
    with pytest.raises(SignatureError, match="not signed"):
        open_envelope(b'{"schema_version": 1}')
    with pytest.raises(SignatureError, match="shorter than the minimum"):
        open_envelope(env[: MIN_ENVELOPE_BYTES - 1])
    bad_len = bytearray(env)
    bad_len[20] = 250
    with pytest.raises(SignatureError, match="250-byte satellite id"):
        open_envelope(bytes(bad_len))
    bad_sat = bytearray(env)
    bad_sat[21] = ord("/")
    with pytest.raises(SignatureError, match="does not match"):
        open_envelope(bytes(bad_sat))
    zero = bytearray(env)
    zero[12:20] = bytes(8)
    with pytest.raises(SignatureError, match="sequence number 0"):
        open_envelope(bytes(zero))
    with pytest.raises(SignatureError, match="outside"):
        seal(b"{}", KEY, "sat1", 0)
    with pytest.raises(SignatureError, match="invalid satellite id"):
        seal(b"{}", KEY, "sat/1", 1)


def test_unsigned_encodings_are_told_apart() -> None:
    assert is_sealed(seal(b"{}", KEY, "s", 1))
    assert not is_sealed(framed_job())
    assert not is_sealed(b'{"schema_version": 1}')


def test_public_key_text_and_fingerprint() -> None:
    raw = public_bytes(KEY)
    assert load_public_key(raw.hex().upper() + "\n") == raw
    assert fingerprint(raw) == key_id(raw).hex() and len(fingerprint(raw)) == 16
    with pytest.raises(SignatureError, match="64 hex digits"):
        load_public_key("abcd")
    with pytest.raises(SignatureError, match="64 hex digits"):
        load_public_key("zz" * 32)


def test_generated_key_files_sign_what_the_public_file_verifies(tmp_path: Path) -> None:
    signer = generate_key(tmp_path / "keys", "ops-alice")
    private = tmp_path / "keys" / "ops-alice.key"
    assert private.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    public = read_public_key(tmp_path / "keys" / "ops-alice.pub")
    assert public == signer.public_key
    loaded = load_signer(private)
    first, second = loaded.seal(b"{}", "sat1"), signer.seal(b"{}", "sat1")
    a, b = open_envelope(first), open_envelope(second)
    a.verify(public)
    b.verify(public)
    assert b.sequence == a.sequence + 1  # one counter file shared by both Signer objects
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_key(tmp_path / "keys", "ops-alice")
    os.chmod(private, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_signer(private)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_signer(tmp_path / "keys" / "nobody.key")


def test_counter_seeds_from_the_clock_and_never_repeats_across_threads_and_descriptors(tmp_path: Path) -> None:
    counter = SequenceCounter(tmp_path / "k.seq", clock_us=lambda: 1_700_000_000_000_000)
    assert counter.next() == 1_700_000_000_000_000
    assert counter.next() == 1_700_000_000_000_001
    other = SequenceCounter(tmp_path / "k.seq")  # its own descriptor, as another process would have
    numbers: list[int] = []
    lock = threading.Lock()

    def take(c: SequenceCounter) -> None:
        for _ in range(50):
            n = c.next()
            with lock:
                numbers.append(n)

    threads = [threading.Thread(target=take, args=(c,)) for c in (counter, counter, other, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(numbers)) == 200 and max(numbers) == 1_700_000_000_000_201
    # A lost or corrupted counter file re-seeds from the clock, above everything used before.
    (tmp_path / "k.seq").unlink()
    (tmp_path / "k.seq").write_text("garbage")
    later = SequenceCounter(tmp_path / "k.seq", clock_us=lambda: 1_700_000_001_000_000)
    assert later.next() > max(numbers)
    assert counter.next() == later.next() - 1  # a replaced file is reopened, not written behind its back


def test_ground_keys_cli_makes_a_key_the_satellite_entry_describes(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "lab-bob", "--role", "user", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    public = read_public_key(tmp_path / "lab-bob.pub")
    assert f'public_key = "{public.hex()}"' in out and 'role = "user"' in out and "priority_cap = 5" in out
    assert main(["keys", "show", str(tmp_path / "lab-bob.key")]) == 0
    assert fingerprint(public) in capsys.readouterr().out
    assert main(["keys", "new", "lab-bob", "--role", "user", "--dir", str(tmp_path)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


def test_the_worked_example_in_the_icd_is_what_seal_produces() -> None:
    """docs/icd.md, "Signed requests": RFC 8032 test key 1 signs a ping for sat1, sequence 1."""
    key = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    body = b'{"schema_version":1,"command_id":"c-0001","issued_utc":1767225600.0,"body":{"action":"ping"}}'
    env = seal(body, key, "sat1", 1)
    dump = "\n".join(
        f"{i:04x}  " + " ".join(f"{b:02x}" for b in env[i : i + 16]) for i in range(0, len(env), 16)
    )
    icd = (REPO / "docs" / "icd.md").read_text()
    assert f"```\n{dump}\n```" in icd
    assert fingerprint(public_bytes(key)) in icd and f"{len(env)} bytes sent" in icd


@pytest.mark.parametrize("sequence, sat", [(0, b"sat1"), (1, b"sat 9!"), (2**64 - 1, b"\xff\xfe")])
def test_peek_body_names_the_job_of_an_envelope_refused_for_its_fields(sequence: int, sat: bytes) -> None:
    """An envelope refused for its sequence number or satellite id still names its job, so the refusal
    reaches the sender on jobs/<id>/state (bench.fuzz found a sequence-0 envelope answered by nothing)."""
    body = b'{"schema_version": 1, "job_id": "j-7"}'
    sealed = b"ORS1" + bytes(8) + struct.pack("<QB", sequence, len(sat)) + sat + body + bytes(64)
    with pytest.raises(SignatureError):
        open_envelope(sealed)
    assert bytes(peek_body(sealed)) == body
    assert peek_body(sealed[:40]) == sealed[:40]  # too short for its own layout: the payload itself
