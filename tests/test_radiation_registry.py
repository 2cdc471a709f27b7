"""The registry re-verifies a model file before every reload of weights (issue 15 item 4), in flightd's
own soft-error service, with a real registry, real ONNX Runtime sessions and real files: a flip in a
held model's only replica is rebuilt from the file when the file still matches its manifest; when the
file changed on disk since it was loaded, nothing is rebuilt from it, the model is unloaded with an
error event, and no session of it is handed out any more."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.radiation.service import SoftErrorService
from flight.registry import ModelError, ModelRegistry
from flight.settings import ModelRadiation, RadiationSettings
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


def held_registry(tmp_path: Path) -> tuple[ModelRegistry, SoftErrorService, Events]:
    settings = RadiationSettings(scrub_period_s=PERIOD_S,
                                 models={MODEL: ModelRadiation(owned_weights=True, replicas=1)})
    registry = ModelRegistry(copy_bundled(tmp_path / "models", MODEL), radiation=settings)
    assert registry.scan() == []
    events = Events()
    service = SoftErrorService(settings, registry, events, lambda jobs, why: None, step_s=0.1)
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
