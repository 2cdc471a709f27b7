"""Redundant execution: a job's inference run once, twice and compared (DMR), or three times and voted (TMR).

Pure decision logic plus a synchronous driver. Run ``i`` is meant to execute on weight replica
``i % replicas`` (:func:`replica_for`), so a corrupted weight in one copy shows up as a disagreement;
a transient fault inside one run (an activation, a register, an output buffer) does too. ONNX Runtime's
CPU kernels are deterministic for a fixed thread count, so healthy runs agree bit for bit and the
comparison is exact (tests/test_radiation_redundancy.py checks it on the bundled models).

- ``none``: one run, unchecked.
- ``dmr``: two runs; equal -> "agreed"; different -> a third run, and the majority wins ("voted");
  three different answers -> "unresolved" (the job fails or is flagged, never answered wrong silently).
- ``tmr``: three runs; all equal -> "agreed", two equal -> "voted", none -> "unresolved".

Cost: DMR doubles the compute of every job (three runs when a fault is caught), TMR triples it
(issue 15; physics.md: full duplication costs 100 %).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from link.str_enum import StrEnum

Arrays = dict[str, np.ndarray[Any, Any]]


class Redundancy(StrEnum):
    """How a job's result is checked (a job field later; the governor may raise it in high flux)."""

    NONE = "none"
    DMR = "dmr"
    TMR = "tmr"


RUNS_FIRST = {Redundancy.NONE: 1, Redundancy.DMR: 2, Redundancy.TMR: 3}
"""Runs made before anything is compared."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of a checked run: ``status`` is "single", "agreed", "voted" or "unresolved";
    ``winner`` indexes the run whose outputs are the answer (None when unresolved)."""

    status: str
    winner: int | None
    runs: int

    @property
    def ok(self) -> bool:
        return self.winner is not None


def same(a: Arrays, b: Arrays) -> bool:
    """True if both runs produced the same outputs bit for bit (NaN payloads included)."""
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        if np.ascontiguousarray(x).tobytes() != np.ascontiguousarray(y).tobytes():
            return False
    return True


def _majority(outputs: Sequence[Arrays]) -> int | None:
    for i in range(len(outputs)):
        votes = sum(1 for j in range(len(outputs)) if same(outputs[i], outputs[j]))
        if votes * 2 > len(outputs):
            return i
    return None


def decide(mode: Redundancy, outputs: Sequence[Arrays]) -> Verdict | int:
    """A verdict on the runs so far, or the number of further runs needed before there can be one."""
    needed = RUNS_FIRST[mode] - len(outputs)
    if needed > 0:
        return needed
    if mode is Redundancy.NONE:
        return Verdict("single", 0, len(outputs))
    if all(same(outputs[0], o) for o in outputs[1:]):
        return Verdict("agreed", 0, len(outputs))
    if len(outputs) < 3:
        return 3 - len(outputs)
    winner = _majority(outputs)
    return Verdict("voted" if winner is not None else "unresolved", winner, len(outputs))


def replica_for(run: int, replicas: int) -> int:
    """The weight replica run number ``run`` executes on (round-robin)."""
    return run % max(1, replicas)


@dataclass(frozen=True)
class CheckedRun:
    """Outputs of the winning run (None if unresolved) with the verdict and every run's outputs."""

    outputs: Arrays | None
    verdict: Verdict
    runs: list[Arrays]


def run_checked(mode: Redundancy, run: Callable[[int], Arrays]) -> CheckedRun:
    """Call ``run(i)`` for i = 0, 1, ... until :func:`decide` gives a verdict."""
    outputs: list[Arrays] = []
    while True:
        step = decide(mode, outputs)
        if isinstance(step, Verdict):
            winner = outputs[step.winner] if step.winner is not None else None
            return CheckedRun(winner, step, outputs)
        for _ in range(step):
            outputs.append(run(len(outputs)))
