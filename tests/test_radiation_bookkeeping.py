"""The soft-error bookkeeping flightd publishes (pure parts): which jobs a corrupt block makes suspect,
the ``soft_errors`` channel's values, and what an injected run fault did (changed, detected, escaped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flight.radiation.injection import FaultInjector, flip_array_bits, pick_bits
from flight.radiation.ledger import JobRuns, RunLog, SoftErrorLedger
from flight.radiation.redundancy import Verdict
from flight.radiation.weights import CorruptBlock
from link.telemetry import CHANNELS, SOFT_ERRORS


def corrupt(replica: int, clean_at: float, model: str = "m/1") -> CorruptBlock:
    return CorruptBlock(model, replica, 3, ("w",), detected_at=clean_at + 5.0, clean_at=clean_at)


def test_suspects_are_jobs_that_read_only_the_corrupt_replica_after_its_last_clean_check() -> None:
    log = RunLog(keep_s=30.0)
    log.record(JobRuns("before", "m/1", frozenset({0}), 0.0, 9.0))  # ended before the block last verified
    log.record(JobRuns("single", "m/1", frozenset({0}), 9.5, 11.0))  # overlapped the clean check: suspect
    log.record(JobRuns("other-replica", "m/1", frozenset({1}), 11.0, 12.0))
    log.record(JobRuns("dmr", "m/1", frozenset({0, 1}), 12.0, 13.0))  # compared with clean replica 1
    log.record(JobRuns("other-model", "n/1", frozenset({0}), 12.0, 13.0))
    assert log.suspects(corrupt(0, clean_at=10.0)) == ["single"]
    assert log.suspects(corrupt(0, clean_at=10.0)) == []  # suspect once
    assert log.suspects(corrupt(1, clean_at=10.0)) == ["other-replica"]
    log.record(JobRuns("late", "m/1", frozenset({0}), 100.0, 101.0))  # the old entries fall out of the window
    assert len(log) == 1


def test_ledger_values_are_the_channels_keys_in_wire_order() -> None:
    ledger = SoftErrorLedger(blocks_corrupt=2, bits_repaired=5, scrub_cpu_s=0.25)
    values = ledger.values()
    assert list(values) == list(CHANNELS[SOFT_ERRORS].keys)
    assert (values["blocks_corrupt"], values["bits_repaired"], values["scrub_cpu_s"]) == (2.0, 5.0, 0.25)
    assert all(isinstance(v, float) for v in values.values())


def test_pick_bits_single_adjacent_and_flips() -> None:
    rng = np.random.default_rng(0)
    scattered = pick_bits(rng, 10_000, 8, adjacent=False)
    assert len(set(scattered)) == 8 and all(0 <= b < 10_000 for b in scattered)
    word = pick_bits(rng, 10_000, 8, adjacent=True)
    assert len(set(word)) == 8 and len({b // 64 for b in word}) == 1
    assert len(pick_bits(rng, 10, 64, adjacent=True)) == 10  # never more than there are
    with pytest.raises(ValueError):
        pick_bits(rng, 0, 1, adjacent=False)
    arrays = {"a": np.zeros(2, dtype=np.float32), "b": np.zeros(1, dtype=np.uint8)}
    flipped = flip_array_bits(arrays, [0, 31, 64 + 3])
    assert flipped["a"].view(np.uint32).tolist() == [0x80000001, 0] and flipped["b"].tolist() == [8]
    assert arrays["a"].tolist() == [0.0, 0.0]  # copies: the originals are untouched


def _outs(*values: float) -> list[dict[str, np.ndarray]]:
    return [{"y": np.array([v], dtype=np.float32)} for v in values]


def test_settle_counts_changed_detected_and_escaped() -> None:
    inj = FaultInjector(seed=1)
    inj.arm("output", "m", count=4, bits=1, adjacent=False)
    hooks = inj.hooks("j", "m")
    assert hooks is not None and inj.hooks("j", "other") is None  # armed for model m: none for the other
    for job in ("single", "voted", "masked", "failed"):
        hooks.after(job, 0, 0, _outs(1.0)[0])
    assert inj.armed == 0 and inj.injected_run_faults == 4
    # unchecked, and its outputs differ from a clean reference: escaped
    inj.settle("single", Verdict("single", 0, 1), _outs(9.0), reference=_outs(1.0)[0])
    # DMR: run 0 differs, the vote sides with run 1: detected
    inj.settle("voted", Verdict("voted", 1, 3), _outs(9.0, 1.0, 1.0), reference=None)
    # the fault left the outputs as they were: neither
    inj.settle("masked", Verdict("agreed", 0, 2), _outs(1.0, 1.0), reference=None)
    # no majority: the job failed, the fault was caught
    inj.settle("failed", None, [], reference=None)
    assert (inj.run_faults_changed, inj.run_faults_detected, inj.run_faults_escaped) == (3, 2, 1)
    assert not inj.pending("voted")


def test_the_configuration_example_in_docs_radiation_md_is_what_flightd_reads(tmp_path: Path) -> None:
    import re

    from flight.settings import FlightSettings
    from link.messages import Redundancy

    doc = (Path(__file__).resolve().parent.parent / "docs" / "radiation.md").read_text()
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block is not None
    (tmp_path / "flightd.toml").write_text(block.group(1))
    r = FlightSettings.load(tmp_path / "flightd.toml").radiation
    assert (r.scrub_period_s, r.suspect_results, r.test_fault_injection) == (10.0, "rerun", False)
    assert r.model("tile-fp32").owned_weights and r.model("tile-fp32").replicas == 2
    assert not r.model("tile-int8").owned_weights and not r.model("digits-fp32").owned_weights
    assert r.default_redundancy("tile-int8", 1) is Redundancy.DMR  # the model's default
    assert r.default_redundancy("tile-fp32", 9) is Redundancy.DMR  # the priority's
    assert r.default_redundancy("tile-fp32", 8) is Redundancy.NONE
