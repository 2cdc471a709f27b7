"""link.codec / link.tensor: round trips, bytes on the wire, and clear WireErrors for bad payloads.

Expected bytes are written out by hand (IEEE 754 / two's complement, little-endian) or derived with
struct/json independently of the code under test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from link.codec import MAGIC, WireError, decode, encode, pack_tensors, peek_field, peek_header, unpack_tensors
from link.messages import Command, JobRequest, Telemetry
from link.tensor import SUPPORTED_DTYPES, TensorError, dtype_name

DTYPES = [np.dtype(name) for name in SUPPORTED_DTYPES]


def split_framed(payload: bytes) -> tuple[dict[str, object], bytes]:
    """Parse the framed layout by hand: magic, uint32 LE header length, JSON header, binary tail."""
    assert payload[:4] == b"ORB1"
    (n,) = struct.unpack("<I", payload[4:8])
    return json.loads(payload[8 : 8 + n].decode("utf-8")), payload[8 + n :]


def round_trip(arrays: dict[str, np.ndarray], framed: bool) -> dict[str, np.ndarray]:
    tensors, binary = pack_tensors(arrays, framed=framed)
    payload = encode(JobRequest(job_id="rt-1", model="m", inputs=tensors), binary)
    decoded = decode(payload, JobRequest)
    assert decoded.message.job_id == "rt-1"
    return unpack_tensors(decoded.message.inputs, decoded.binary)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype (ignoring byte order), shape and bit pattern (NaN and -0.0 included)."""
    if a.dtype.newbyteorder("=") != b.dtype.newbyteorder("=") or a.shape != b.shape:
        return False
    native = a.dtype.newbyteorder("=")
    return np.ascontiguousarray(a, dtype=native).tobytes() == np.ascontiguousarray(b, dtype=native).tobytes()


# ------------------------------------------------------------------------------------ round trips


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6),
    framed=st.booleans(),
    big_endian=st.booleans(),
)
def test_round_trip_every_dtype_any_shape_both_encodings(
    data: st.DataObject, dtype: np.dtype, shape: tuple[int, ...], framed: bool, big_endian: bool
) -> None:
    if big_endian and dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">")
    array = data.draw(hnp.arrays(dtype, shape))
    out = round_trip({"x": array}, framed)["x"]
    assert same_array(out, array)
    assert out.dtype.isnative or out.dtype.itemsize == 1


@settings(max_examples=40, deadline=None)
@given(arrays=st.dictionaries(
    st.text(alphabet="abcdefgh_", min_size=1, max_size=8),
    st.sampled_from(DTYPES).flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))),
    min_size=1, max_size=5,
))
def test_several_tensors_share_one_binary_section(arrays: dict[str, np.ndarray]) -> None:
    for framed in (True, False):
        out = round_trip(arrays, framed)
        assert set(out) == set(arrays)
        assert all(same_array(out[k], arrays[k]) for k in arrays)
    # framed: the tensors lie in order, each at the next multiple of 64, zero bytes between them, and
    # the tail ends with the last tensor
    tensors, binary = pack_tensors(arrays, framed=True)
    offset = 0
    for name, a in arrays.items():
        offset = (offset + 63) // 64 * 64
        nbytes = a.size * a.dtype.itemsize
        assert (tensors[name].offset, tensors[name].nbytes) == (offset, nbytes)
        start = offset
        offset += nbytes
        assert binary[start:offset] == np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
    assert len(binary) == offset
    covered = {i for t in tensors.values() for i in range(t.offset or 0, (t.offset or 0) + (t.nbytes or 0))}
    assert all(binary[i] == 0 for i in range(len(binary)) if i not in covered)


def test_non_contiguous_and_fortran_arrays_travel_in_c_order() -> None:
    base = np.arange(24, dtype=np.int32).reshape(4, 6)
    for array in (base.T, base[:, ::2], np.asfortranarray(base)):
        for framed in (True, False):
            out = round_trip({"x": array}, framed)["x"]
            np.testing.assert_array_equal(out, array)


# ------------------------------------------------------------------------------- bytes on the wire


def test_framed_wire_bytes_are_little_endian_c_order() -> None:
    i32 = np.array([[1, 256], [-1, 0x01020304]], dtype=">i4")  # big-endian in memory on purpose
    f32 = np.array([1.0, -2.0], dtype=np.float32)
    f16 = np.array([1.0], dtype=np.float16)
    tensors, binary = pack_tensors({"i": i32, "f": f32, "h": f16})
    payload = encode(JobRequest(job_id="le", model="m", inputs=tensors), binary)
    header, tail = split_framed(payload)
    assert header["schema_version"] == 1 and header["job_id"] == "le"
    assert (8 + struct.unpack("<I", payload[4:8])[0]) % 64 == 0  # the binary section starts 64-aligned
    expected = (
        bytes.fromhex("01000000" "00010000" "ffffffff" "04030201")  # int32 LE, row-major
        + bytes(48)  # up to offset 64
        + bytes.fromhex("0000803f" "000000c0")  # float32 1.0, -2.0
        + bytes(56)  # up to offset 128
        + bytes.fromhex("003c")  # float16 1.0
    )
    assert tail == expected
    inputs = header["inputs"]
    assert isinstance(inputs, dict)
    assert inputs["i"] == {"dtype": "int32", "shape": [2, 2], "offset": 0, "nbytes": 16}
    assert inputs["f"] == {"dtype": "float32", "shape": [2], "offset": 64, "nbytes": 8}
    assert inputs["h"] == {"dtype": "float16", "shape": [1], "offset": 128, "nbytes": 2}


def test_json_wire_bytes_are_base64_little_endian() -> None:
    array = np.array([1, 2], dtype=">i8")
    tensors, binary = pack_tensors({"x": array}, framed=False)
    assert binary == b""
    payload = encode(JobRequest(job_id="js", model="m", inputs=tensors), binary)
    doc = json.loads(payload)  # plain JSON, no ORB1 prefix
    assert base64.b64decode(doc["inputs"]["x"]["data_b64"]) == bytes.fromhex("0100000000000000" "0200000000000000")
    assert doc["inputs"]["x"]["dtype"] == "int64" and doc["inputs"]["x"]["shape"] == [2]


def test_unsupported_dtype_is_refused_by_name() -> None:
    with pytest.raises(TensorError, match="complex128 is not carried"):
        dtype_name(np.zeros(2, dtype=np.complex128))


# ------------------------------------------------------------------------------------- bad payloads


def framed_job(array: np.ndarray) -> bytes:
    tensors, binary = pack_tensors({"x": array})
    return encode(JobRequest(job_id="bad-1", model="m", inputs=tensors), binary)


def decode_all(payload: bytes) -> dict[str, np.ndarray]:
    d = decode(payload, JobRequest)
    return unpack_tensors(d.message.inputs, d.binary)


def test_framed_prefix_truncated() -> None:
    with pytest.raises(WireError, match="shorter than its 8-byte prefix"):
        decode(MAGIC + b"\x01\x00", JobRequest)


def test_framed_header_length_beyond_payload() -> None:
    payload = framed_job(np.zeros(4, dtype=np.float32))
    (n,) = struct.unpack("<I", payload[4:8])
    lying = payload[:4] + struct.pack("<I", len(payload)) + payload[8:]
    with pytest.raises(WireError, match=rf"claims {len(payload)} bytes but only {len(payload) - 8} follow"):
        decode(lying, JobRequest)
    with pytest.raises(WireError, match=rf"claims {n} bytes but only {n - 10} follow"):
        decode(payload[: 8 + n - 10], JobRequest)  # truncated inside the header


def test_framed_header_corrupted() -> None:
    payload = bytearray(framed_job(np.zeros(4, dtype=np.float32)))
    assert payload[8:10] == b'{"'
    broken = bytes(payload[:9]) + b"{" + bytes(payload[10:])  # '{"schema...' -> '{{schema...'
    with pytest.raises(WireError, match=r"malformed JSON: .* at line 1 column 2"):
        decode(broken, JobRequest)
    not_utf8 = bytes(payload[:8]) + b"\xff" + bytes(payload[9:])
    with pytest.raises(WireError, match=r"neither framed \(ORB1\) nor UTF-8 JSON"):
        decode(not_utf8, JobRequest)


def test_framed_binary_truncated_names_the_tensor() -> None:
    payload = framed_job(np.arange(8, dtype=np.float32))  # 32 bytes of tensor
    with pytest.raises(WireError, match=r"tensor 'x': tensor bytes \[0, 32\) run past the binary section \(28 bytes\)"):
        decode_all(payload[:-4])


def test_framed_nbytes_disagrees_with_dtype_and_shape() -> None:
    tensors, binary = pack_tensors({"x": np.arange(8, dtype=np.float32)})
    lying = {"x": tensors["x"].model_copy(update={"nbytes": 28})}
    payload = encode(JobRequest(job_id="bad-2", model="m", inputs=lying), binary)
    with pytest.raises(WireError, match=r"tensor 'x': float32\[8\] needs 32 bytes, got 28"):
        decode_all(payload)


def test_json_tensor_bytes_wrong_length_or_not_base64() -> None:
    doc = {"schema_version": 1, "job_id": "bad-3", "model": "m",
           "inputs": {"x": {"dtype": "int32", "shape": [3], "data_b64": base64.b64encode(b"\0" * 8).decode()}}}
    with pytest.raises(WireError, match=r"int32\[3\] needs 12 bytes, got 8"):
        decode_all(json.dumps(doc).encode())
    doc["inputs"]["x"]["data_b64"] = "not base64!"  # type: ignore[index]
    with pytest.raises(WireError, match="data_b64 is not valid base64"):
        decode_all(json.dumps(doc).encode())


def test_tensor_with_both_or_neither_form_is_invalid() -> None:
    doc = {"schema_version": 1, "job_id": "bad-4", "model": "m",
           "inputs": {"x": {"dtype": "int32", "shape": [1], "data_b64": "AAAAAA==", "offset": 0, "nbytes": 4}}}
    with pytest.raises(WireError, match="either data_b64 or offset\\+nbytes"):
        decode(json.dumps(doc).encode(), JobRequest)
    doc["inputs"] = {"x": {"dtype": "int32", "shape": [1], "offset": 0}}
    with pytest.raises(WireError, match="needs both offset and nbytes"):
        decode(json.dumps(doc).encode(), JobRequest)


def test_huge_shape_whose_element_count_overflows_int64_is_a_wire_error() -> None:
    """(2**31)**8 elements wrap to 0 in int64 arithmetic; an empty data_b64 must still be refused."""
    doc = {"schema_version": 1, "job_id": "bad-5", "model": "m",
           "inputs": {"x": {"dtype": "uint8", "shape": [2**31] * 8, "data_b64": ""}}}
    with pytest.raises(WireError, match="tensor 'x'"):
        decode_all(json.dumps(doc).encode())


def test_deeply_nested_json_is_a_wire_error_not_a_crash() -> None:
    payload = b"[" * 100_000
    with pytest.raises(WireError):
        decode(payload, JobRequest)
    assert peek_field(payload, "job_id") is None
    assert peek_header(payload) is None


def test_schema_version_missing_or_other() -> None:
    base = {"job_id": "v", "model": "m", "inputs": {"x": {"dtype": "int8", "shape": [0], "data_b64": ""}}}
    for version, shown in ((2, "2"), ("1", "'1'"), (None, "None")):
        doc = dict(base) if version is None else {**base, "schema_version": version}
        with pytest.raises(WireError) as info:
            decode(json.dumps(doc).encode(), JobRequest)
        assert str(info.value) == f"unsupported schema_version {shown}: this build speaks schema_version 1"
    assert decode(json.dumps({**base, "schema_version": 1}).encode(), JobRequest).message.job_id == "v"


def test_unknown_and_missing_fields_are_named() -> None:
    doc = {"schema_version": 1, "job_id": "u", "model": "m", "colour": "red",
           "inputs": {"x": {"dtype": "int8", "shape": [0], "data_b64": "", "extra": 1}}}
    with pytest.raises(WireError) as info:
        decode(json.dumps(doc).encode(), JobRequest)
    text = str(info.value)
    assert text.startswith("invalid JobRequest: ")
    assert "colour: Extra inputs are not permitted" in text
    assert "inputs.x.extra: Extra inputs are not permitted" in text
    with pytest.raises(WireError, match=r"invalid Telemetry: .*values: Field required"):
        decode(json.dumps({"schema_version": 1, "sat": "s", "channel": "power", "t_s": 0}).encode(), Telemetry)


def test_non_object_json() -> None:
    with pytest.raises(WireError, match="expected a JSON object, got list"):
        decode(b"[1, 2]", Command)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_wire_error(blob: bytes) -> None:
    for payload in (blob, MAGIC + blob):
        with contextlib.suppress(WireError):
            decode_all(payload)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), value=st.integers(0, 255), cut=st.integers(min_value=0))
def test_corrupted_or_truncated_valid_payload_only_raises_wire_error(position: int, value: int, cut: int) -> None:
    good = framed_job(np.arange(6, dtype=np.int32).reshape(2, 3))
    flipped = bytearray(good)
    flipped[position % len(good)] = value
    for payload in (bytes(flipped), good[: cut % (len(good) + 1)]):
        try:
            out = decode_all(payload)
        except WireError:
            continue
        assert len(out) == 1 and all(isinstance(v, np.ndarray) for v in out.values())  # a flip may rename it


# ----------------------------------------------------------------------------------------- peeking


def test_peek_field_reads_ids_of_invalid_payloads() -> None:
    invalid_json_job = json.dumps({"schema_version": 9, "job_id": "peek-1", "model": "m"}).encode()
    assert peek_field(invalid_json_job, "job_id") == "peek-1"
    tensors, binary = pack_tensors({"x": np.zeros(3, dtype=np.float32)})
    framed = encode(JobRequest(job_id="peek-2", model="m", inputs=tensors), binary)
    assert peek_field(framed[:-4], "job_id") == "peek-2"  # binary truncated: the header is still readable
    assert peek_field(json.dumps({"job_id": "a/b#"}).encode(), "job_id") is None  # not an identifier
    assert peek_field(json.dumps({"job_id": 12}).encode(), "job_id") is None
    assert peek_field(b"\xff\xfe", "job_id") is None
    assert peek_field(b"[]", "job_id") is None
    assert peek_field(MAGIC + b"\xff\xff\xff\xff{}", "job_id") is None
    assert peek_field(json.dumps({"command_id": "c-1"}).encode(), "command_id") == "c-1"
