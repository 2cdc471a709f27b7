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

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from link.messages import Redundancy

Arrays = dict[str, np.ndarray[Any, Any]]

RUNS_FIRST = {Redundancy.NONE: 1, Redundancy.DMR: 2, Redundancy.TMR: 3}
"""Runs made before anything is compared (also the governor's cost multiplier of a mode)."""

MAX_RUNS = 6
"""Most runs one checked job makes (runs on weights repaired meanwhile are made again): then unresolved."""


def strongest(*modes: Redundancy | None) -> Redundancy:
    """The strongest of ``modes`` (none < dmr < tmr; None counts as none): how a job's own mode, its
    model's and priority's defaults and the governor's high-flux floor combine."""
    return max((m for m in modes if m is not None), key=lambda m: RUNS_FIRST[m], default=Redundancy.NONE)


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
    """Outputs of the winning run (None if unresolved) with the verdict and every run's outputs, in order."""

    outputs: Arrays | None
    verdict: Verdict
    runs: list[Arrays]


def run_checked(mode: Redundancy, run: Callable[[int], Arrays],
                discard: Callable[[int], Collection[int]] | None = None, max_runs: int = MAX_RUNS) -> CheckedRun:
    """Call ``run(i)`` for i = 0, 1, ... until :func:`decide` gives a verdict on the runs that count.

    Before run ``i``, ``discard(i)`` may name earlier runs whose answers no longer count (the weights they
    read were just found corrupt and repaired): they are dropped and replaced by new runs, so that one
    copy corrupted in each replica cannot leave a vote without a majority; a verdict over dropped runs
    that disagreed is "voted", not "agreed". After ``max_runs`` runs the verdict is "unresolved". The
    verdict's ``winner`` indexes ``runs`` (every run, in order) and its ``runs`` counts them all."""
    outputs: list[Arrays] = []
    kept: list[int] = []
    while True:
        step = decide(mode, [outputs[k] for k in kept])
        if isinstance(step, Verdict):
            winner = kept[step.winner] if step.winner is not None else None
            status = step.status
            if status == "agreed" and winner is not None and any(not same(o, outputs[winner]) for o in outputs):
                status = "voted"  # a dropped run disagreed: the answer was chosen over it
            verdict = Verdict(status, winner, len(outputs))
            return CheckedRun(outputs[winner] if winner is not None else None, verdict, outputs)
        for _ in range(step):
            i = len(outputs)
            if i >= max_runs:
                return CheckedRun(None, Verdict("unresolved", None, i), outputs)
            if discard is not None:
                dropped = set(discard(i))
                kept = [k for k in kept if k not in dropped]
            outputs.append(run(i))
            kept.append(i)
