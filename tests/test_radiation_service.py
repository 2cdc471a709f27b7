"""flightd's soft-error service in process, with a real registry, real ONNX Runtime sessions and real
files (issue 15 items 1 and 4):

- the registry re-verifies a model file before every reload of weights: a flip in a held model's only
  replica is rebuilt from the file when the file still matches its manifest; when the file changed on
  disk since it was loaded, nothing is rebuilt from it, the model is unloaded with an error event, and
  no session of it is handed out any more;
- the jobs that ran on a replica since its last clean check are computed again or only flagged, as
  ``radiation.suspect_results`` says; a job that read the other replica too is not suspect.

The end-to-end counterparts (a running flightd) are in tests/test_radiation_flightd.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.radiation.ledger import JobRuns
from flight.radiation.service import SoftErrorService
from flight.registry import ModelError, ModelRegistry
from flight.settings import RadiationSettings
from link.manifest import MODEL_FILE
from link.messages import EventKind
from tests.support import copy_bundled

MODEL = "digits-fp32"
PERIOD_S = 0.2


def image() -> dict[str, np.ndarray[Any, Any]]:
    return {"image": np.random.default_rng(5).random((4, 1, 8, 8), dtype=np.float32)}


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[EventKind, str, str, dict[str, Any]]] = []

    def __call__(self, kind: EventKind, message: str, severity: str = "info", **details: Any) -> None:
        self.seen.append((kind, message, severity, details))


def held_registry(tmp_path: Path, replicas: int = 1, suspect: str = "rerun",
                  recompute: Callable[[list[str], str], None] = lambda jobs, why: None,
                  ) -> tuple[ModelRegistry, SoftErrorService, Events]:
    settings = RadiationSettings.model_validate({
        "scrub_period_s": PERIOD_S, "suspect_results": suspect,
        "models": {MODEL: {"owned_weights": True, "replicas": replicas}}})
    registry = ModelRegistry(copy_bundled(tmp_path / "models", MODEL), radiation=settings)
    assert registry.scan() == []
    events = Events()
    service = SoftErrorService(settings, registry, events, recompute, step_s=0.1)
    return registry, service, events


def scrub_until_found(service: SoftErrorService, events: Events, timeout_s: float = 5.0) -> None:
    """Call the scrubber as the control cycle does until a step reports something (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while not any(kind is EventKind.SOFT_ERROR for kind, *_ in events.seen):
        assert time.monotonic() < deadline, "the scrubber found nothing"
        service.scrub()
        time.sleep(0.02)


def test_a_flip_in_the_only_replica_is_rebuilt_from_the_verified_file(tmp_path: Path) -> None:
    registry, service, events = held_registry(tmp_path)
    entry = registry.resolve(MODEL)
    session = registry.session(entry, 1)
    clean = session.run(None, image())[0]
    store = registry.held.stores[entry.ref]
    for bit in range(30, store.weight_bytes * 8, 32 * 1000):  # a float32's top exponent bit, in every block
        store.flip(0, bit)
    assert not np.array_equal(session.run(None, image())[0], clean)
    scrub_until_found(service, events)
    time.sleep(PERIOD_S)
    service.scrub()  # the rest of the sweep
    assert service.ledger.repairs_failed == 0
    repairs = [r for _, _, _, d in events.seen for r in d.get("repairs", [])]
    assert repairs and {r["source"] for r in repairs} == {"file"}  # one replica: nothing else to copy from
    assert np.array_equal(registry.session(entry, 1).run(None, image())[0], clean)


def test_a_model_file_changed_on_disk_is_never_reloaded_the_model_is_unloaded(tmp_path: Path) -> None:
    registry, service, events = held_registry(tmp_path)
    entry = registry.resolve(MODEL)
    registry.session(entry, 1)
    store = registry.held.stores[entry.ref]
    path = entry.directory / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # the file takes an upset too (its manifest sha256 no longer matches)
    path.write_bytes(bytes(data))
    store.flip(0, 7)
    scrub_until_found(service, events)
    assert service.ledger.repairs_failed == 1
    errors = [(m, d) for kind, m, severity, d in events.seen if kind is EventKind.SOFT_ERROR and severity == "error"]
    assert len(errors) == 1 and "could not be repaired" in errors[0][0] and "sha256" in errors[0][0]
    assert errors[0][1]["model"] == entry.ref
    assert entry.ref not in registry.held.stores
    with pytest.raises(ModelError, match="not loadable"):
        registry.session(entry, 1)


def test_an_unloaded_model_is_not_resolved_for_a_job_until_a_rescan(tmp_path: Path) -> None:
    """What flightd does before a run (ModelRegistry.resolve) after an unload: a ModelError with the reason,
    not stale weights; a rescan looks at the (intact) file again."""
    registry, _, _ = held_registry(tmp_path)
    entry = registry.resolve(MODEL)
    registry.session(entry, 1)
    registry.unload(entry.ref, "weights corrupt and could not be repaired: test")
    assert entry.ref not in registry.held.stores
    with pytest.raises(ModelError, match="not loadable: weights corrupt and could not be repaired: test"):
        registry.resolve(MODEL)
    assert registry.scan() == []
    assert registry.session(registry.resolve(MODEL), 1).run(None, image())[0].shape[0] == 4


@pytest.mark.parametrize("suspect", ["rerun", "flag"])
def test_jobs_run_on_a_corrupt_replica_since_its_last_clean_check_are_rerun_or_flagged(
    tmp_path: Path, suspect: str
) -> None:
    asked: list[tuple[list[str], str]] = []
    registry, service, events = held_registry(tmp_path, replicas=2, suspect=suspect,
                                              recompute=lambda jobs, why: asked.append((jobs, why)))
    entry = registry.resolve(MODEL)
    registry.session(entry, 1)
    now = time.monotonic()
    service.run_log.record(JobRuns("on-replica-0", entry.ref, frozenset({0}), now - 0.01, now))
    service.run_log.record(JobRuns("on-replica-1", entry.ref, frozenset({1}), now - 0.01, now))
    service.run_log.record(JobRuns("dmr-on-both", entry.ref, frozenset({0, 1}), now - 0.01, now))
    registry.held.stores[entry.ref].flip(0, 30)
    scrub_until_found(service, events)
    (_, message, _, details), = [e for e in events.seen if e[3].get("blocks")]
    assert details["suspect_jobs"] == ["on-replica-0"] and details["action"] == suspect
    assert details["repairs"][0]["source"] == "replica"  # the other copy verified: copied from it
    assert service.ledger.suspect_jobs == 1
    if suspect == "rerun":
        assert asked == [(["on-replica-0"], "it ran on weights the scrubber later found corrupt")]
        assert "(re-run)" in message
    else:
        assert asked == [] and "(flagged)" in message
