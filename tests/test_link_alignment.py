"""Tensors decode aligned (issue 10, item 6).

The framed encoding puts the binary section at a multiple of 64 bytes from the frame's start and
every tensor at a multiple of 64 in it, so a decoded array is a view that is aligned wherever the
payload's buffer is (numpy's ``flags.aligned``: its address a multiple of the element size, what ARM
needs to load it without a fault). A frame written without padding (older writers), or a payload in
a buffer that is itself misaligned, decodes to aligned copies. Frames stay ORB1: a reader written
from the old layout (below, by hand) reads the new ones.
"""

from __future__ import annotations

import json
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from link.codec import MAGIC, decode, encode, pack_tensors, unpack_tensors
from link.messages import JobRequest
from link.tensor import SUPPORTED_DTYPES, aligned_copy

DTYPES = [np.dtype(name) for name in SUPPORTED_DTYPES]
ARRAYS = st.dictionaries(
    st.text(alphabet="abcdefgh", min_size=1, max_size=6),
    st.sampled_from(DTYPES).flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))),
    min_size=1, max_size=5,
)


def framed(arrays: dict[str, np.ndarray], job_id: str = "al") -> bytes:
    tensors, binary = pack_tensors(arrays)
    return encode(JobRequest(job_id=job_id, model="m", inputs=tensors), binary)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def old_reader(payload: bytes) -> dict[str, np.ndarray]:
    """The ORB1 layout as first documented: magic, uint32 LE header length, JSON header, tensors at
    their offsets in the tail. It knows nothing of padding."""
    (n,) = struct.unpack("<I", payload[4:8])
    header = json.loads(payload[8 : 8 + n])
    tail = payload[8 + n :]
    out = {}
    for name, t in header["inputs"].items():
        raw = tail[t["offset"] : t["offset"] + t["nbytes"]]
        out[name] = np.frombuffer(raw, dtype=np.dtype(t["dtype"]).newbyteorder("<")).reshape(t["shape"])
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays=ARRAYS, job_id=st.text(alphabet="abc", min_size=1, max_size=40))
def test_every_tensor_of_a_frame_starts_64_aligned_and_decodes_as_an_aligned_view(
    arrays: dict[str, np.ndarray], job_id: str
) -> None:
    payload = framed(arrays, job_id)
    (n,) = struct.unpack("<I", payload[4:8])
    assert (8 + n) % 64 == 0
    decoded = decode(payload, JobRequest)
    out = unpack_tensors(decoded.message.inputs, decoded.binary)
    whole = np.frombuffer(payload, dtype=np.uint8)
    for name, tensor in decoded.message.inputs.items():
        assert tensor.offset is not None and (8 + n + tensor.offset) % 64 == 0
        array = out[name]
        assert array.flags.aligned
        assert same(array, np.ascontiguousarray(arrays[name], dtype=arrays[name].dtype.newbyteorder("=")))
        if array.nbytes and array.dtype.isnative:
            assert np.shares_memory(array, whole)  # a view: no copy for an aligned frame
    assert {k: v.tobytes() for k, v in old_reader(payload).items()} == {k: v.tobytes() for k, v in out.items()}


def unpadded_frame(arrays: dict[str, np.ndarray], lead: int) -> bytes:
    """A frame as an older writer made it: no padding, tensors back to back, the binary section
    starting ``lead`` bytes past a 64-byte boundary (extra spaces in the header)."""
    tensors, chunks, offset = {}, [], 0
    for name, a in arrays.items():
        raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        tensors[name] = {"dtype": a.dtype.name, "shape": list(a.shape), "offset": offset, "nbytes": len(raw)}
        chunks.append(raw)
        offset += len(raw)
    header = json.dumps({"schema_version": 1, "job_id": "old", "model": "m", "inputs": tensors}).encode()
    header += b" " * ((lead - 8 - len(header)) % 64)
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(chunks)


@settings(max_examples=100, deadline=None)
@given(arrays=ARRAYS, lead=st.integers(0, 63))
def test_unpadded_frames_of_older_writers_decode_to_aligned_arrays(arrays: dict[str, np.ndarray], lead: int) -> None:
    payload = unpadded_frame(arrays, lead)
    decoded = decode(payload, JobRequest)
    out = unpack_tensors(decoded.message.inputs, decoded.binary)
    for name, a in arrays.items():
        assert out[name].flags.aligned, (name, lead)
        assert same(out[name], np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")))


def test_an_odd_offset_is_copied_to_a_64_byte_boundary() -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    payload = unpadded_frame({"pad": np.zeros(3, np.uint8), "x": x}, lead=1)
    decoded = decode(payload, JobRequest)
    assert decoded.message.inputs["x"].offset == 3  # misaligned on purpose
    out = unpack_tensors(decoded.message.inputs, decoded.binary)["x"]
    assert out.ctypes.data % 64 == 0 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x)


@settings(max_examples=50, deadline=None)
@given(arrays=ARRAYS, shift=st.integers(1, 7))
def test_a_payload_in_a_misaligned_buffer_decodes_to_aligned_arrays(arrays: dict[str, np.ndarray], shift: int) -> None:
    payload = framed(arrays)
    buffer = bytearray(shift) + bytearray(payload)
    view = memoryview(buffer)[shift:]
    decoded = decode(view, JobRequest)
    out = unpack_tensors(decoded.message.inputs, decoded.binary)
    for name, a in arrays.items():
        assert out[name].flags.aligned
        assert same(out[name], np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("=")))


@given(arrays=ARRAYS)
def test_aligned_copy_is_64_aligned_and_equal(arrays: dict[str, np.ndarray]) -> None:
    for a in arrays.values():
        c = aligned_copy(a)
        assert c.ctypes.data % 64 == 0 and c.flags.c_contiguous and same(c, np.ascontiguousarray(a))
