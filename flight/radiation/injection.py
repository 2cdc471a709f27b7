"""TEST-ONLY fault injection: bit flips in held weights, in one run's input copy or outputs, and the
bookkeeping of what each injected run fault did (docs/radiation.md, "Fault injection").

flightd builds a :class:`FaultInjector` only when started with ``radiation.test_fault_injection = true``
(and logs a warning that says so); the ``inject_fault`` command drives it. Weight flips go straight into a
:class:`~flight.radiation.weights.WeightStore` replica, where the scrubber must find them. Run faults are
*armed*: the next run of the named model (any model when none is named) takes one, as a transient upset
in its activations or its output buffer would; :meth:`FaultInjector.hooks` gives the executor the hooks of
one job (:class:`flight.executor.RunHooks`). After the job, :meth:`FaultInjector.settle` says whether the
fault changed the run's outputs, whether redundancy caught it and whether a wrong answer was returned.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flight.radiation.redundancy import Arrays, Verdict, same
from flight.radiation.weights import WeightStore

WORD_BITS = 64
"""A multiple-cell upset's extent: its bits fall within one aligned 64-bit word (Alsat-1 saw 1.4 % of its
upsets hit more than one bit; Bentoutou 2012)."""


def pick_bits(rng: np.random.Generator, total_bits: int, bits: int, adjacent: bool) -> list[int]:
    """``bits`` distinct positions in ``[0, total_bits)``, uniform; within one aligned 64-bit word when
    ``adjacent`` (a multiple-cell upset), anywhere otherwise (several upsets). ValueError if empty."""
    if total_bits <= 0:
        raise ValueError("nothing to flip: no bits")
    bits = min(bits, total_bits)
    if not adjacent or total_bits <= WORD_BITS:
        return [int(b) for b in rng.choice(total_bits, size=bits, replace=False)]
    word = int(rng.integers(0, total_bits // WORD_BITS)) * WORD_BITS
    return [word + int(b) for b in rng.choice(WORD_BITS, size=min(bits, WORD_BITS), replace=False)]


def flip_array_bits(arrays: Arrays, bits: list[int]) -> Arrays:
    """Copies of ``arrays`` with ``bits`` inverted, counted over their bytes in order (C layout)."""
    out = {k: np.ascontiguousarray(v).copy() for k, v in arrays.items()}
    views = [(k, a.reshape(-1).view(np.uint8)) for k, a in out.items()]
    for bit in bits:
        byte = bit // 8
        for _, raw in views:
            if byte < raw.size:
                raw[byte] ^= np.uint8(1 << (bit % 8))
                break
            byte -= raw.size
    return out


def total_bits(arrays: Arrays) -> int:
    return sum(int(np.asarray(a).nbytes) for a in arrays.values()) * 8


@dataclass(frozen=True)
class ArmedFault:
    """A run fault waiting for a run: ``place`` "input" or "output"; ``model`` None: any."""

    place: str
    model: str | None
    bits: int
    adjacent: bool


@dataclass(frozen=True)
class AppliedFault:
    """An armed fault a run took: job, run number, replica slot, place and the bits inverted."""

    job_id: str
    run: int
    slot: int
    place: str
    bits: tuple[int, ...]


@dataclass(frozen=True)
class FaultOutcome:
    """What one applied run fault did: ``changed`` the run's outputs, was ``detected`` by the runs'
    comparison, ``escaped`` (a changed answer returned without a flag)."""

    fault: AppliedFault
    changed: bool
    detected: bool
    escaped: bool


@dataclass
class FaultInjector:
    """Armed run faults, applied faults by job, and counters (see the module docstring)."""

    seed: int | None = None
    injected_weight_bits: int = 0
    injected_run_faults: int = 0
    run_faults_changed: int = 0
    run_faults_detected: int = 0
    run_faults_escaped: int = 0
    _armed: list[ArmedFault] = field(default_factory=list)
    _applied: dict[str, list[AppliedFault]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def _rng(self, seed: int | None) -> np.random.Generator:
        return self.rng if seed is None else np.random.default_rng(seed)

    # ------------------------------------------------------------------------------- weights

    def flip_weights(self, store: WeightStore, replica: int | None, count: int, bits: int, adjacent: bool,
                     seed: int | None = None) -> list[dict[str, Any]]:
        """``count`` upsets of ``bits`` bits in ``store`` (replica random when None); what was flipped."""
        rng = self._rng(seed)
        done: list[dict[str, Any]] = []
        with self._lock:
            return self._flip_weights(store, replica, count, bits, adjacent, rng, done)

    def _flip_weights(self, store: WeightStore, replica: int | None, count: int, bits: int, adjacent: bool,
                      rng: np.random.Generator, done: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for _ in range(count):
            r = int(rng.integers(0, store.replicas)) if replica is None else replica
            if not 0 <= r < store.replicas:
                raise ValueError(f"model {store.model} has {store.replicas} weight replica(s), not {r + 1}")
            positions = pick_bits(rng, store.weight_bytes * 8, bits, adjacent)
            hit = []
            for bit in positions:
                tensor, offset = store.locate(bit)
                store.flip(r, bit)
                hit.append({"bit": bit, "tensor": tensor, "block": offset // store.block_bytes})
            self.injected_weight_bits += len(positions)
            done.append({"model": store.model, "replica": r, "bits": hit})
        return done

    # ---------------------------------------------------------------------------------- runs

    def arm(self, place: str, model: str | None, count: int, bits: int, adjacent: bool) -> int:
        """Arm ``count`` run faults; returns how many are waiting now."""
        with self._lock:
            self._armed.extend(ArmedFault(place, model, bits, adjacent) for _ in range(count))
            return len(self._armed)

    @property
    def armed(self) -> int:
        with self._lock:
            return len(self._armed)

    def _take(self, place: str, model: str) -> ArmedFault | None:
        with self._lock:
            for i, fault in enumerate(self._armed):
                if fault.place == place and fault.model in (None, model):
                    return self._armed.pop(i)
        return None

    def hooks(self, job_id: str, model: str) -> JobFaultHooks | None:
        """The executor hooks of one job of ``model``; None when no fault is armed for it."""
        with self._lock:
            if not any(f.model in (None, model) for f in self._armed):
                return None
        return JobFaultHooks(self, model)

    def _apply(self, job_id: str, run: int, slot: int, place: str, model: str, arrays: Arrays) -> Arrays:
        fault = self._take(place, model)
        if fault is None:
            return arrays
        with self._lock:  # the executor's threads and the event loop share the generator
            positions = pick_bits(self.rng, total_bits(arrays), fault.bits, fault.adjacent)
            applied = AppliedFault(job_id, run, slot, place, tuple(positions))
            self._applied.setdefault(job_id, []).append(applied)
            self.injected_run_faults += 1
        return flip_array_bits(arrays, positions)

    def pending(self, job_id: str) -> bool:
        """Whether a run of ``job_id`` took a fault not settled yet."""
        with self._lock:
            return job_id in self._applied

    def settle(self, job_id: str, verdict: Verdict | None, runs: list[Arrays],
               reference: Arrays | None) -> list[FaultOutcome]:
        """Account the faults ``job_id``'s runs took: ``verdict`` None for runs with no majority (the job
        failed: a fault that changed a run was caught); ``runs`` every run's outputs; ``reference`` a clean
        run's outputs when the job was run once only (flightd makes one in test mode)."""
        with self._lock:
            applied = self._applied.pop(job_id, [])
        outcomes = []
        for fault in applied:
            mine = runs[fault.run] if fault.run < len(runs) else None
            if verdict is None:  # no majority: failed loudly, never answered
                changed, detected, escaped = True, True, False
            elif verdict.status == "single":
                changed = mine is not None and reference is not None and not same(mine, reference)
                detected, escaped = False, changed
            else:
                winner = runs[verdict.winner] if verdict.winner is not None else None
                others = [r for i, r in enumerate(runs) if i != fault.run]
                changed = mine is not None and any(not same(mine, r) for r in others)
                escaped = changed and winner is not None and mine is not None and same(winner, mine)
                detected = changed and not escaped  # outvoted, or its run dropped (its weights were repaired)
            self.run_faults_changed += changed
            self.run_faults_detected += detected
            self.run_faults_escaped += escaped
            outcomes.append(FaultOutcome(fault, changed, detected, escaped))
        return outcomes


@dataclass
class JobFaultHooks:
    """One job's :class:`flight.executor.RunHooks`: each run takes at most one armed fault per place."""

    injector: FaultInjector
    model: str

    def before(self, job_id: str, run: int, slot: int, feeds: Arrays) -> Arrays:
        return self.injector._apply(job_id, run, slot, "input", self.model, feeds)

    def after(self, job_id: str, run: int, slot: int, outputs: Arrays) -> Arrays:
        return self.injector._apply(job_id, run, slot, "output", self.model, outputs)
