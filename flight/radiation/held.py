"""The weights flightd holds in memory of its own, per configuration, and the scrubber that watches them.

:class:`HeldWeights` keeps one :class:`~flight.radiation.weights.WeightStore` per model version whose
configuration says ``owned_weights`` (flight.settings.ModelRadiation), registers it with one
:class:`~flight.radiation.scrubber.Scrubber`, and hands out sessions that compute from a given replica
(:class:`OwnedSession`, which keeps its store alive). The registry builds every session through it
(flight.registry.ModelRegistry.session); ``reload(ref)`` is the registry's re-verified read of a model
file (its sha256 checked again before every reload).

Which session a job's run ``i`` executes on (:meth:`HeldWeights.slot_for`): run ``i`` reads replica
``i % replicas``; before a run that comes back to a replica this job already read (a DMR vote after a
mismatch, a TMR third run on two replicas) every block of the model is checked and repaired *now*
(:meth:`~flight.radiation.scrubber.Scrubber.check_now`), so a persistent flip in one copy can never win
a vote by being read twice, and the vote computes from verified weights. A model not held gets an
independent ONNX Runtime session per run (up to three: ONNX Runtime's own copy of the weights in each).
The scrubber's step (event loop) and these checks (executor threads) take turns on :attr:`HeldWeights.lock`.

GPU execution providers copy the initializers into device memory when the session is created: the
store then checks a host copy that is not what runs. :meth:`HeldWeights.scrubbed` says whether a
session computes from the scrubbed memory (CPU provider only).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import onnxruntime as ort

from flight.radiation.redundancy import RUNS_FIRST
from flight.radiation.scrubber import Scrubber, ScrubReport
from flight.radiation.weights import WeightStore
from flight.settings import RadiationSettings

log = logging.getLogger("flightd.radiation")

CPU = "CPUExecutionProvider"
MAX_SESSIONS = max(RUNS_FIRST.values())
"""Independent sessions of a model not held: one per run of TMR, or of DMR with its vote."""


class OwnedSession(ort.InferenceSession):  # type: ignore[misc]  # onnxruntime ships no type hints
    """A session computing from replica ``replica`` of ``store`` (holding the store keeps its memory alive
    for as long as the session lives, even after the registry drops both)."""

    def __init__(self, model_bytes: bytes, options: ort.SessionOptions, providers: list[str],
                 store: WeightStore, replica: int) -> None:
        super().__init__(model_bytes, sess_options=options, providers=providers)
        self.store = store
        self.replica = replica


class HeldWeights:
    """Owned weight stores by model version (``ref`` = ``name/version``) and their scrubber."""

    def __init__(self, settings: RadiationSettings, reload: Callable[[str], bytes],
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.scrubber = Scrubber(reload=reload, period_s=settings.scrub_period_s)
        self.lock = threading.Lock()
        """Held while the stores are checked or repaired (the scrubber's step, :meth:`slot_for`'s check)."""
        self._lock = threading.Lock()

    @property
    def stores(self) -> dict[str, WeightStore]:
        return self.scrubber.stores

    def owned(self, name: str) -> bool:
        return self.settings.model(name).owned_weights

    def store(self, ref: str, name: str, verified: bytes) -> WeightStore | None:
        """The store of ``ref`` (built from ``verified``, the sha256-checked file bytes, on first use), or
        None when ``name``'s weights are not held. ValueError if the model keeps weights a store cannot
        hold (external data, sparse initializers)."""
        if not self.owned(name):
            return None
        with self._lock:
            found = self.scrubber.stores.get(ref)
            if found is None:
                replicas = self.settings.model(name).replicas
                found = WeightStore(ref, verified, replicas=replicas, loaded_at=self.clock())
                self.scrubber.add(found)
                log.info("model %s: %d weight bytes held in %d replica(s), %d blocks each, scrubbed every %g s",
                         ref, found.weight_bytes, replicas, found.blocks, self.scrubber.period_s)
            return found

    def session(self, store: WeightStore | None, model_bytes: bytes, options: ort.SessionOptions,
                provider: str, slot: int) -> Any:
        """A new session of ``model_bytes`` on ``provider``: over ``store``'s replica ``slot`` when held."""
        if store is None:
            return ort.InferenceSession(model_bytes, sess_options=options, providers=[provider])
        if provider != CPU:
            log.warning("model %s runs on %s, which copies its weights into device memory: the scrubbed host "
                        "copy is not what runs (docs/radiation.md)", store.model, provider)
        return OwnedSession(model_bytes, store.session_options(slot, options), [provider], store, slot)

    @staticmethod
    def scrubbed(session: Any) -> bool:
        """Whether ``session`` computes from weights flightd holds and scrubs (CPU provider only)."""
        return isinstance(session, OwnedSession) and session.get_providers()[0] == CPU

    def slot_for(self, ref: str, run: int, used: set[int],
                 found: Callable[[ScrubReport], None]) -> tuple[int, frozenset[int]]:
        """(the session (replica) of run number ``run`` of a job that has read replicas ``used`` so far,
        the replicas repaired just now): a replica read again is checked and repaired first, what that
        found handed to ``found``."""
        store = self.scrubber.stores.get(ref)
        if store is None:
            return min(run, MAX_SESSIONS - 1), frozenset()
        slot = run % store.replicas
        if slot not in used:
            return slot, frozenset()
        report = self.check_now(ref)
        if report.found or report.failed:
            found(report)
        return slot, frozenset(c.replica for c in report.found)

    def check_now(self, ref: str) -> ScrubReport:
        """Every block of ``ref``'s replicas checked and repaired now (under :attr:`lock`)."""
        with self.lock:
            return self.scrubber.check_now(ref, self.clock())

    def step(self, now: float) -> ScrubReport:
        """The scrubber's periodic step (under :attr:`lock`)."""
        with self.lock:
            return self.scrubber.step(now)

    def drop(self, ref: str | None = None) -> None:
        """Stop holding ``ref`` (every model when None); sessions built on a store keep it alive."""
        with self._lock:
            for key in [ref] if ref is not None else list(self.scrubber.stores):
                self.scrubber.remove(key)

    def held_bytes(self) -> int:
        """Weight bytes held, all replicas of all stores."""
        return sum(s.weight_bytes * s.replicas for s in self.scrubber.stores.values())
