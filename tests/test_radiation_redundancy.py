"""Redundant execution (DMR/TMR) and the final-layer checksum on real ONNX Runtime sessions."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from flight.radiation.abft import ConvChecksums, GemmChecksum, ModelChecksums
from flight.radiation.redundancy import Verdict, decide, replica_for, run_checked, same
from flight.radiation.weights import WeightStore
from link.messages import Redundancy
from tests.test_radiation_weights import feeds, model_bytes, session

Arrays = dict[str, np.ndarray[Any, Any]]


def out(value: float) -> Arrays:
    return {"y": np.array([value], dtype=np.float32)}


def test_decide_none_dmr_tmr() -> None:
    assert decide(Redundancy.NONE, []) == 1
    assert decide(Redundancy.NONE, [out(1)]) == Verdict("single", 0, 1)
    assert decide(Redundancy.DMR, [out(1)]) == 1
    assert decide(Redundancy.DMR, [out(1), out(1)]) == Verdict("agreed", 0, 2)
    assert decide(Redundancy.DMR, [out(1), out(2)]) == 1  # a third run breaks the tie
    assert decide(Redundancy.DMR, [out(1), out(2), out(2)]) == Verdict("voted", 1, 3)
    assert decide(Redundancy.DMR, [out(1), out(2), out(3)]) == Verdict("unresolved", None, 3)
    assert decide(Redundancy.TMR, [out(1), out(1)]) == 1
    assert decide(Redundancy.TMR, [out(1), out(1), out(1)]) == Verdict("agreed", 0, 3)
    assert decide(Redundancy.TMR, [out(5), out(1), out(1)]) == Verdict("voted", 1, 3)
    assert not decide(Redundancy.TMR, [out(1), out(2), out(3)]).ok  # type: ignore[union-attr]


def test_same_is_bitwise() -> None:
    nan = {"y": np.array([np.nan], dtype=np.float32)}
    assert same(nan, {"y": nan["y"].copy()})
    assert not same(out(0.0), out(-0.0))  # equal as numbers, different bits
    assert not same(out(1.0), {"y": np.array([1.0], dtype=np.float64)})
    assert not same(out(1.0), {"z": np.array([1.0], dtype=np.float32)})
    assert replica_for(2, 2) == 0 and replica_for(2, 3) == 2 and replica_for(5, 0) == 0


@pytest.mark.parametrize("replicas", [2, 3])
def test_dmr_catches_a_corrupted_replica_and_votes_the_right_answer(replicas: int) -> None:
    store = WeightStore("tile-fp32", model_bytes("tile-fp32"), replicas=replicas)
    sessions = [session(store, r) for r in range(replicas)]
    x = feeds("tile-fp32")
    names = [o.name for o in sessions[0].get_outputs()]

    def run(i: int) -> Arrays:
        return dict(zip(names, sessions[replica_for(i, replicas)].run(None, x), strict=True))

    clean = run_checked(Redundancy.DMR, run)
    assert clean.verdict == Verdict("agreed", 0, 2)
    store.flip(1, 7 * 8 * 4 + 30)  # an exponent bit of conv1.w[7]: replica 1 now answers differently
    checked = run_checked(Redundancy.DMR, run)
    assert checked.verdict.status == "voted" and checked.verdict.runs == 3
    assert checked.outputs is not None and same(checked.outputs, clean.outputs or {})
    assert not same(checked.runs[1], clean.outputs or {})


def test_dmr_catches_a_fault_in_one_runs_output() -> None:
    store = WeightStore("digits-fp32", model_bytes("digits-fp32"), replicas=2)
    sessions = [session(store, r) for r in range(2)]
    x = feeds("digits-fp32")

    def run(i: int) -> Arrays:
        logits = sessions[replica_for(i, 2)].run(None, x)[0]
        if i == 1:
            logits.reshape(-1).view(np.uint32)[5] ^= np.uint32(1)  # the least significant mantissa bit
        return {"logits": logits}

    checked = run_checked(Redundancy.DMR, run)
    assert checked.verdict == Verdict("voted", 0, 3)
    tmr = run_checked(Redundancy.TMR, run)
    assert tmr.verdict.status == "voted" and tmr.verdict.runs == 3


def checked_session(store: WeightStore, check: GemmChecksum | ModelChecksums) -> tuple[ort.InferenceSession, list[str]]:
    """A 2-thread session over replica 0 of the model with ``check``'s extra nodes and outputs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    sess = ort.InferenceSession(check.model_bytes(store.model_bytes), store.session_options(0, options),
                                providers=["CPUExecutionProvider"])
    return sess, [o.name for o in sess.get_outputs()]


@pytest.mark.parametrize("name", ["tile-fp32", "digits-fp32"])
def test_final_gemm_checksum_holds_on_clean_runs(name: str) -> None:
    store = WeightStore(name, model_bytes(name))
    check = GemmChecksum.final_layer(store)
    sess, names = checked_session(store, check)
    input_name, example = next(iter(feeds(name).items()))
    rng = np.random.default_rng(11)
    for _ in range(20):
        x = rng.random((4, *example.shape[1:]), dtype=np.float32) * rng.uniform(0.1, 10.0)
        outputs = dict(zip(names, sess.run(None, {input_name: x}), strict=True))
        assert check.ok(outputs), check.residual(outputs)


def test_final_gemm_checksum_sees_head_and_output_faults_not_conv_faults() -> None:
    store = WeightStore("tile-fp32", model_bytes("tile-fp32"))
    check = GemmChecksum.final_layer(store)
    assert (check.input_name, check.output_name) == ("features", "keep_logit")
    sess, names = checked_session(store, check)
    x = feeds("tile-fp32")

    def outputs() -> Arrays:
        return dict(zip(names, sess.run(None, x), strict=True))

    head = store.array(0, "head.w").reshape(-1).view(np.uint32)
    head[17] ^= np.uint32(1 << 29)  # an exponent bit of one head weight
    assert not check.ok(outputs())
    head[17] ^= np.uint32(1 << 29)
    assert check.ok(outputs())

    result = outputs()
    result["keep_logit"].reshape(-1).view(np.uint32)[0] ^= np.uint32(1 << 22)  # the top mantissa bit
    assert not check.ok(result)

    conv = store.array(0, "conv3.w").reshape(-1).view(np.uint32)
    conv[100] ^= np.uint32(1 << 29)
    faulty = outputs()
    assert not np.array_equal(faulty["keep_logit"], result["keep_logit"])
    assert check.ok(faulty)  # consistent with its (wrong) input: outside this check's reach


def test_final_gemm_checksum_refuses_int8_and_non_gemm_heads() -> None:
    with pytest.raises(ValueError, match="not made by a Gemm"):
        GemmChecksum.final_layer(WeightStore("tile-int8", model_bytes("tile-int8")))


@pytest.mark.parametrize("name", ["tile-fp32", "digits-fp32"])
def test_conv_checksums_hold_on_clean_runs_and_leave_the_result_alone(name: str) -> None:
    store = WeightStore(name, model_bytes(name))
    check = ModelChecksums.for_model(store)
    assert check.convs is not None and check.gemm is not None and check.convs.skipped == ()
    sess, names = checked_session(store, check)
    plain = session(store, threads=2)
    input_name, example = next(iter(feeds(name).items()))
    rng = np.random.default_rng(5)
    for _ in range(20):
        x = (rng.standard_normal((2, *example.shape[1:])) * rng.uniform(0.1, 10.0)).astype(np.float32)
        outputs = dict(zip(names, sess.run(None, {input_name: x}), strict=True))
        assert check.ok(outputs), check.convs.residual(outputs).max()
        assert np.array_equal(outputs[names[0]], plain.run(None, {input_name: x})[0])


def test_conv_checksums_see_a_flip_in_any_convolution() -> None:
    store = WeightStore("tile-fp32", model_bytes("tile-fp32"))
    check = ModelChecksums.for_model(store)
    assert check.convs is not None
    sess, names = checked_session(store, check)
    x = feeds("tile-fp32")
    clean = sess.run(None, x)[0]
    changed = 0
    for layer in range(1, 8):
        for index in (3, 1000, 1700):  # a weight whose input channel is dead after the Relu changes nothing
            value = store.array(0, f"conv{layer}.w").reshape(-1)
            assert abs(value[index]) < 1.0
            weights = value.view(np.uint32)
            weights[index] ^= np.uint32(1 << 30)  # the top exponent bit, clear in |w| < 2: the weight grows by 2^128
            outputs = dict(zip(names, sess.run(None, x), strict=True))
            weights[index] ^= np.uint32(1 << 30)
            residual = check.convs.residual(outputs)
            assert np.all(residual[: layer - 1] <= 1.0)  # the layers before it are unaffected
            if not np.array_equal(outputs[names[0]], clean):
                changed += 1
                assert residual[layer - 1].max() > 1.0, (layer, index)
    assert changed >= 15
    assert check.ok(dict(zip(names, sess.run(None, x), strict=True)))


def test_conv_checksums_need_float_convolutions() -> None:
    with pytest.raises(ValueError, match="no float32 Conv"):
        ConvChecksums.for_model(WeightStore("tile-int8", model_bytes("tile-int8")))


def test_runs_on_weights_repaired_meanwhile_are_made_again() -> None:
    """Both replicas corrupted, differently: the two first runs disagree; the check before the vote repairs
    both, so both runs are dropped and two new ones agree (no unresolved verdict, the right answer)."""
    clean = run_checked(Redundancy.DMR, lambda i: out(1.0), lambda i: [0] if i == 1 else [])
    assert clean.verdict.status == "agreed" and clean.verdict.runs == 3  # dropped, but it agreed: "agreed"
    good, bad0, bad1 = out(1.0), out(2.0), out(3.0)
    corrupt = {0: True, 1: True}
    answers: list[int] = []

    def run(i: int) -> Arrays:
        slot = i % 2
        answers.append(slot)
        return (bad0 if slot == 0 else bad1) if corrupt[slot] else good

    def discard(i: int) -> list[int]:
        if i >= 2 and any(corrupt.values()):  # the vote's check repairs every replica
            corrupt.update({0: False, 1: False})
            return [0, 1]
        return []

    checked = run_checked(Redundancy.DMR, run, discard)  # the dropped runs disagreed: "voted", not "agreed"
    assert checked.verdict.status == "voted" and checked.verdict.runs == 4 and checked.verdict.winner == 2
    assert checked.outputs is not None and same(checked.outputs, good) and len(checked.runs) == 4
    # without the check the vote reads corrupt replica 0 again and its wrong answer wins: why the check is made
    corrupt.update({0: True, 1: True})
    unchecked = run_checked(Redundancy.DMR, run, lambda i: [])
    assert unchecked.verdict.status == "voted" and unchecked.outputs is not None and same(unchecked.outputs, bad0)
    # runs are bounded
    always = run_checked(Redundancy.DMR, lambda i: out(float(i)), lambda i: [i - 1] if i else [], max_runs=6)
    assert always.verdict.status == "unresolved" and always.verdict.runs == 6
