"""Model weights in memory flightd owns, with a CRC-32 per block, scrubbed and repaired.

ONNX Runtime computes from caller-owned initializers when each is handed over with
``SessionOptions.add_initializer`` and the session may neither pre-pack nor re-lay them out
(measured with ORT 1.32, docs/radiation.md "What ONNX Runtime copies"):

- ``session.disable_prepacking = "1"``: otherwise Gemm/MatMul (FP32) and QLinearConv/MatMulInteger (INT8)
  kernels pack the weights into buffers of their own at session creation, and a flip in ours changes
  nothing;
- graph optimisation at most ``ORT_ENABLE_EXTENDED``: ``ORT_ENABLE_ALL`` adds the NCHWc layout
  transformer, which rewrites every FP32 Conv weight into a new, reordered initializer.

With these, flipping a bit of any weight in our buffer changes the next run's output (tests/test_radiation_weights.py
checks it tensor by tensor on the bundled models), and the session's own resident memory no longer holds a
second copy of the weights (tile-fp32: 13.4 MiB added by the session instead of 22.3 MiB).

Layout: one contiguous buffer per replica, each initializer at a 64-byte aligned offset, cut into
``block_bytes`` blocks (default 8 KiB). The golden CRC-32 of each block is computed once from the
verified model bytes. CRC-32 (IEEE 802.3) detects every burst of up to 32 bits and, on blocks this
short (65,536 bits), every error of up to 3 bits (Hamming distance 4 up to 91,607 bits: Koopman,
"32-Bit Cyclic Redundancy Codes for Internet Applications", DSN 2002); other patterns escape with
probability 2^-32. ``zlib.crc32`` runs at 3.7-6 GB/s on the development machine (docs/radiation.md).

Everything here is plain memory: the caller passes the time (``now``, s on any monotonic clock) and a
``reload`` callable that returns the model file's bytes after verifying their sha256 (the registry's job).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from flight.model_proto import Initializer, ModelGraph, read_graph

BLOCK_BYTES = 8192
"""Default scrub block, bytes: short enough for CRC-32 to catch every 1-3 bit error in it (Koopman 2002)."""

ALIGN_BYTES = 64
"""Offset alignment of each tensor in the buffer (a cache line; numpy's and MLAS's widest)."""

SESSION_CONFIG = {"session.disable_prepacking": "1"}
"""Session config entries without which ONNX Runtime computes from copies of the weights."""

MAX_OPTIMIZATION = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
"""Highest graph optimisation level that keeps every weight in our memory (ALL re-lays FP32 Conv weights)."""


@dataclass(frozen=True)
class TensorSlot:
    """Where one initializer lives in a replica's buffer: bytes ``[offset, offset + nbytes)``."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class CorruptBlock:
    """A block whose CRC no longer matches: found at ``detected_at``; clean when last checked at ``clean_at``.

    Runs of ``replica`` that started after ``clean_at`` may have used the corrupted weights.
    """

    model: str
    replica: int
    block: int
    tensors: tuple[str, ...]
    detected_at: float
    clean_at: float


@dataclass(frozen=True)
class Repair:
    """What :meth:`WeightStore.repair` did for one corrupt block: ``source`` is "replica", "file" or "table"
    (the block was right and its golden CRC was the corrupted word); ``bits`` flipped back and the
    ``tensors`` they were in."""

    block: CorruptBlock
    source: str
    bits: int
    tensors: tuple[str, ...]


def _pack(initializers: Iterable[Initializer], align: int) -> tuple[list[TensorSlot], int]:
    slots, offset = [], 0
    for init in initializers:
        offset = -(-offset // align) * align
        slots.append(TensorSlot(init.name, init.dtype, init.shape, offset, init.nbytes))
        offset += init.nbytes
    return slots, offset


@dataclass
class _Replica:
    buffer: np.ndarray[Any, np.dtype[np.uint8]]
    arrays: dict[str, np.ndarray[Any, Any]]
    values: dict[str, ort.OrtValue]
    clean_at: np.ndarray[Any, np.dtype[np.float64]]


@dataclass
class WeightStore:
    """The weights of one model, ``replicas`` independent copies of them, and their checksums.

    Build it from model bytes whose sha256 was verified; :meth:`session_options` hands one replica to a
    new ONNX Runtime session. :meth:`scrub` checks the next blocks round-robin (all replicas),
    :meth:`repair` restores flagged blocks from a clean replica or from the model file.
    ValueError if the model keeps weights this store cannot hold (external data, sparse initializers).
    """

    model: str
    model_bytes: bytes
    replicas: int = 1
    block_bytes: int = BLOCK_BYTES
    loaded_at: float = 0.0
    slots: list[TensorSlot] = field(init=False)
    size_bytes: int = field(init=False)
    golden: np.ndarray[Any, np.dtype[np.uint32]] = field(init=False)
    graph: ModelGraph = field(init=False)
    _replicas: list[_Replica] = field(init=False)
    _cursor: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("a weight store needs at least one replica")
        if self.block_bytes <= 0 or self.block_bytes % ALIGN_BYTES:
            raise ValueError(f"block_bytes must be a positive multiple of {ALIGN_BYTES}")
        self.graph = read_graph(self.model_bytes)
        if self.graph.sparse_initializers:
            raise ValueError(f"model {self.model}: sparse initializers cannot be held in owned memory")
        self.slots, self.size_bytes = _pack(self.graph.initializers, ALIGN_BYTES)
        image = self._image(self.graph)
        self.golden = self._crcs(image)
        self._replicas = [self._replica(image) for _ in range(self.replicas)]

    # ------------------------------------------------------------------------------------ layout

    @property
    def blocks(self) -> int:
        """Blocks per replica."""
        return max(1, -(-self.size_bytes // self.block_bytes))

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights proper (without alignment padding), per replica."""
        return sum(s.nbytes for s in self.slots)

    def _image(self, graph: ModelGraph) -> np.ndarray[Any, np.dtype[np.uint8]]:
        image = np.zeros(self.blocks * self.block_bytes, dtype=np.uint8)
        for slot, init in zip(self.slots, graph.initializers, strict=True):
            if (init.name, init.nbytes) != (slot.name, slot.nbytes):
                raise ValueError(f"model {self.model}: initializer {init.name} does not match the loaded layout")
            image[slot.offset : slot.offset + slot.nbytes] = np.frombuffer(init.data, dtype=np.uint8)
        return image

    def _crcs(self, image: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, np.dtype[np.uint32]]:
        view = image.data
        size = self.block_bytes
        return np.array([zlib.crc32(view[b * size : (b + 1) * size]) for b in range(self.blocks)], dtype=np.uint32)

    def _replica(self, image: np.ndarray[Any, np.dtype[np.uint8]]) -> _Replica:
        buffer = image.copy()
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        values: dict[str, ort.OrtValue] = {}
        for slot in self.slots:
            array = buffer[slot.offset : slot.offset + slot.nbytes].view(slot.dtype).reshape(slot.shape)
            arrays[slot.name] = array
            values[slot.name] = ort.OrtValue.ortvalue_from_numpy(array)
        return _Replica(buffer, arrays, values, np.full(self.blocks, self.loaded_at))

    def tensors_in(self, block: int) -> tuple[str, ...]:
        """Names of the initializers that have bytes in ``block``."""
        lo, hi = block * self.block_bytes, (block + 1) * self.block_bytes
        return tuple(s.name for s in self.slots if s.offset < hi and s.offset + s.nbytes > lo)

    def array(self, replica: int, name: str) -> np.ndarray[Any, Any]:
        """The live array of initializer ``name`` in ``replica`` (writes reach the sessions built on it)."""
        return self._replicas[replica].arrays[name]

    # ------------------------------------------------------------------------------------ sessions

    def session_options(self, replica: int, options: ort.SessionOptions | None = None) -> ort.SessionOptions:
        """``options`` (or new ones) set up to compute from ``replica``'s memory: every initializer added,
        pre-packing off, graph optimisation capped at :data:`MAX_OPTIMIZATION`. Keep this store alive as
        long as any session built with them."""
        options = options or ort.SessionOptions()
        for key, value in SESSION_CONFIG.items():
            options.add_session_config_entry(key, value)
        if int(options.graph_optimization_level) > int(MAX_OPTIMIZATION):
            options.graph_optimization_level = MAX_OPTIMIZATION
        for name, value in self._replicas[replica].values.items():
            options.add_initializer(name, value)
        return options

    # ------------------------------------------------------------------------------------ scrubbing

    def _check(self, replica: int, block: int) -> bool:
        start = block * self.block_bytes
        view = self._replicas[replica].buffer.data[start : start + self.block_bytes]
        return zlib.crc32(view) == int(self.golden[block])

    def scrub(self, now: float, max_blocks: int | None = None) -> list[CorruptBlock]:
        """Verify the next ``max_blocks`` blocks (all when None), each in every replica; returns the corrupt ones.

        Blocks found clean get ``now`` as their clean time; flagged ones keep theirs until repaired.
        """
        count = self.blocks if max_blocks is None else min(max_blocks, self.blocks)
        found = []
        for _ in range(count):
            block = self._cursor
            self._cursor = (self._cursor + 1) % self.blocks
            for index, replica in enumerate(self._replicas):
                if self._check(index, block):
                    replica.clean_at[block] = now
                else:
                    clean_at = float(replica.clean_at[block])
                    found.append(CorruptBlock(self.model, index, block, self.tensors_in(block), now, clean_at))
        return found

    def mismatched_blocks(self, replica: int) -> list[int]:
        """Blocks of ``replica`` whose CRC does not match, checked now; changes no state."""
        return [b for b in range(self.blocks) if not self._check(replica, b)]

    def verify_all(self, now: float) -> list[CorruptBlock]:
        """Every block of every replica, from block 0 (for a check before a run); leaves the cursor alone."""
        cursor = self._cursor
        self._cursor = 0
        try:
            return self.scrub(now)
        finally:
            self._cursor = cursor

    def repair(self, found: Iterable[CorruptBlock], now: float, reload: Callable[[], bytes]) -> list[Repair]:
        """Restore each flagged block; ``reload()`` returns the verified model bytes and is called at most once.

        A block is copied from another replica whose same block verifies; failing that it is rebuilt from
        the file. If the block already equals the file's bytes, the golden CRC was the corrupted word and
        is recomputed. ValueError (from ``reload`` or the parser) if the file cannot be trusted either.
        """
        fresh: np.ndarray[Any, np.dtype[np.uint8]] | None = None
        done = []
        for corrupt in found:
            block, size = corrupt.block, self.block_bytes
            target = self._replicas[corrupt.replica].buffer[block * size : (block + 1) * size]
            if self._check(corrupt.replica, block):  # repaired already (listed twice)
                continue
            donor = next((i for i in range(self.replicas) if i != corrupt.replica and self._check(i, block)), None)
            if donor is not None:
                good = self._replicas[donor].buffer[block * size : (block + 1) * size]
                source = "replica"
            else:
                if fresh is None:
                    fresh = self._image(read_graph(reload()))
                good = fresh[block * size : (block + 1) * size]
                source = "file"
            changed = np.flatnonzero(target != good)
            bits = int(np.unpackbits(target[changed] ^ good[changed]).sum())
            tensors = self._tensors_at(block * size + changed)
            if changed.size:
                target[:] = good
            else:
                self.golden[block] = zlib.crc32(good.data)
                source = "table"
            if not self._check(corrupt.replica, block):
                raise ValueError(f"model {self.model}: block {block} still fails its CRC after repair")
            self._replicas[corrupt.replica].clean_at[block] = now
            done.append(Repair(corrupt, source, bits, tensors))
        return done

    def _tensors_at(self, offsets: np.ndarray[Any, Any]) -> tuple[str, ...]:
        names = []
        for slot in self.slots:
            if np.any((offsets >= slot.offset) & (offsets < slot.offset + slot.nbytes)):
                names.append(slot.name)
        return tuple(names)

    # ------------------------------------------------------------------------------------ fault injection

    def locate(self, bit: int) -> tuple[str, int]:
        """(tensor, byte offset in a replica's buffer) of weight bit ``bit``, counted over the weight bytes
        only (padding excluded); ValueError outside them. The block is ``offset // block_bytes``."""
        if not 0 <= bit < self.weight_bytes * 8:
            raise ValueError(f"bit {bit} outside the {self.weight_bytes * 8} weight bits of {self.model}")
        byte = bit // 8
        for slot in self.slots:
            if byte < slot.nbytes:
                return slot.name, slot.offset + byte
            byte -= slot.nbytes
        raise AssertionError("unreachable: bit index checked above")

    def flip(self, replica: int, bit: int) -> str:
        """Fault injection (tests, benchmarks, the SIL run): invert bit ``bit`` of ``replica``'s weights
        (:meth:`locate`); returns the tensor hit."""
        tensor, offset = self.locate(bit)
        self._replicas[replica].buffer[offset] ^= np.uint8(1 << (bit % 8))
        return tensor


def ownership_probe(
    store: WeightStore, replica: int, run: Callable[[], list[np.ndarray[Any, Any]]]
) -> dict[str, bool]:
    """Which initializers the session behind ``run`` reads from ``replica``'s memory at run time.

    Each tensor in turn has all its bytes inverted (XOR 0x55) for one ``run()``; True if the outputs
    changed or the run failed. A tensor that shows False is either copied by ONNX Runtime or has no
    influence on these outputs. The buffer is restored and verified against the golden CRCs afterwards.
    """
    reference = run()
    live: dict[str, bool] = {}
    for slot in store.slots:
        array = store.array(replica, slot.name)
        raw = array.reshape(-1).view(np.uint8)
        saved = raw.copy()
        raw ^= np.uint8(0x55)
        try:
            outputs = run()
            live[slot.name] = any(not np.array_equal(a, b) for a, b in zip(outputs, reference, strict=True))
        except Exception:  # ORT refused the corrupted weights (for example a zero scale): it read them
            live[slot.name] = True
        finally:
            raw[:] = saved
    if store.mismatched_blocks(replica):
        raise AssertionError("ownership probe left the weights changed")
    return live
