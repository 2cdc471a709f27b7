"""Owned, scrubbed weights on real ONNX Runtime sessions (no mocks): flightd's memory is what ORT computes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.radiation_inprocess import model_bytes, verified_reload
from flight.model_proto import ModelProtoError, read_graph, with_graph_outputs
from flight.radiation.scrubber import Scrubber
from flight.radiation.weights import WeightStore, ownership_probe

MODELS = {  # name -> (input name, input shape)
    "tile-fp32": ("tile", (1, 3, 128, 128)),
    "tile-int8": ("tile", (1, 3, 128, 128)),
    "digits-fp32": ("image", (4, 1, 8, 8)),
    "digits-int8": ("image", (4, 1, 8, 8)),
}
# Initializers with no influence on the outputs once ORT has fused the QDQ graph (the int32 bias of a
# QLinearConv/QGemm carries the scale x_scale * w_scale implicitly) or at all (a Q/DQ pair on the output
# with the same zero point cancels): a flip in them changes nothing, so no probe can see them read.
UNREAD = ("b_quantized_scale", "b_quantized_zero_point", "logits_zero_point")


def session(store: WeightStore, replica: int = 0, threads: int = 1, **levels: Any) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 4
    for key, value in levels.items():
        setattr(options, key, value)
    return ort.InferenceSession(store.model_bytes, store.session_options(replica, options),
                                providers=["CPUExecutionProvider"])


def feeds(name: str) -> dict[str, np.ndarray[Any, Any]]:
    input_name, shape = MODELS[name]
    return {input_name: np.random.default_rng(7).random(shape, dtype=np.float32)}


# ------------------------------------------------------------------------------------------ model_proto


@pytest.mark.parametrize("name", [*MODELS, "multi-input", "uint8-mean"])
def test_reader_matches_onnx_on_bundled_models(name: str) -> None:
    data = model_bytes(name)
    graph = read_graph(data)
    reference = onnx.load_from_string(data)
    expected = {i.name: numpy_helper.to_array(i) for i in reference.graph.initializer}
    assert [i.name for i in graph.initializers] == list(expected)
    for init in graph.initializers:
        assert init.dtype == expected[init.name].dtype
        assert np.array_equal(init.array(), expected[init.name])
    assert [n.op_type for n in graph.nodes] == [n.op_type for n in reference.graph.node]
    assert graph.outputs == [o.name for o in reference.graph.output]


def _tiny_model(*initializers: TensorProto) -> bytes:
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], list(initializers))
    return bytes(helper.make_model(graph).SerializeToString())


def test_reader_takes_typed_fields_not_only_raw_data() -> None:
    tensors = [
        helper.make_tensor("f", TensorProto.FLOAT, [2, 2], [1.0, -2.0, 3.5, 4.0]),
        helper.make_tensor("i8", TensorProto.INT8, [3], [-1, 5, -128]),
        helper.make_tensor("u8", TensorProto.UINT8, [2], [0, 255]),
        helper.make_tensor("i64", TensorProto.INT64, [2], [-7, 1 << 40]),
        helper.make_tensor("f16", TensorProto.FLOAT16, [2], [1.5, -2.0]),
        helper.make_tensor("f64", TensorProto.DOUBLE, [1], [0.125]),
        helper.make_tensor("empty", TensorProto.FLOAT, [0], []),
    ]
    graph = read_graph(_tiny_model(*tensors))
    for tensor, init in zip(tensors, graph.initializers, strict=True):
        assert np.array_equal(init.array(), numpy_helper.to_array(tensor)), tensor.name


def test_reader_refuses_external_data_and_garbage() -> None:
    tensor = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    tensor.ClearField("raw_data")
    with pytest.raises(ModelProtoError, match="external file"):
        read_graph(_tiny_model(tensor))
    with pytest.raises(ModelProtoError):
        read_graph(b"\x0a\xff\xff\xff\xff\x0f")  # a length that runs past the end
    with pytest.raises(ModelProtoError, match="no graph"):
        read_graph(b"")


def test_added_graph_output_is_served_by_ort() -> None:
    data = with_graph_outputs(model_bytes("tile-fp32"), ["features"])
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["keep_logit", "features"]
    logit, features = sess.run(None, feeds("tile-fp32"))
    assert logit.shape == (1, 1) and features.shape == (1, 512)


# ------------------------------------------------------------------------------------------ ownership


@pytest.mark.parametrize("name", list(MODELS))
def test_every_weight_is_read_from_flightd_memory(name: str) -> None:
    """Corrupting any weight tensor in the owned buffer changes the very next run's output."""
    store = WeightStore(name, model_bytes(name))
    sess = session(store, graph_optimization_level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL)  # capped
    x = feeds(name)
    live = ownership_probe(store, 0, lambda: sess.run(None, x))
    unread = sorted(k for k, v in live.items() if not v)
    assert all(k.endswith(UNREAD) for k in unread), unread
    if name.endswith("fp32"):
        assert unread == []
    else:
        assert all(live[k] for k in live if k.endswith("_quantized"))  # every int8 weight


@pytest.mark.parametrize("name", ["tile-fp32", "digits-int8"])
def test_plain_ort_options_compute_from_copies(name: str) -> None:
    """Why the store's options matter: with ORT's defaults (ALL + pre-packing) some weights are copied,
    and a flip in the owned buffer never reaches the result."""
    store = WeightStore(name, model_bytes(name))
    options = ort.SessionOptions()
    options.log_severity_level = 4
    for n, value in store._replicas[0].values.items():
        options.add_initializer(n, value)
    sess = ort.InferenceSession(store.model_bytes, options, providers=["CPUExecutionProvider"])
    x = feeds(name)
    live = ownership_probe(store, 0, lambda: sess.run(None, x))
    copied = [k for k, v in live.items() if not v and not k.endswith(UNREAD)]
    assert copied, "ORT computed from every owned buffer even with pre-packing on: the note in weights.py is stale"


@pytest.mark.parametrize("name", ["tile-fp32", "digits-int8"])
def test_replicas_agree_bit_for_bit(name: str) -> None:
    store = WeightStore(name, model_bytes(name), replicas=2)
    a, b = session(store, 0, threads=2), session(store, 1, threads=2)
    x = feeds(name)
    first = a.run(None, x)
    for _ in range(5):
        for out in (a.run(None, x), b.run(None, x)):
            assert all(np.array_equal(p, q) for p, q in zip(out, first, strict=True))


# ------------------------------------------------------------------------------------------ scrub + repair


def test_single_flip_is_found_in_one_sweep_and_repaired_from_file() -> None:
    store = WeightStore("tile-fp32", model_bytes("tile-fp32"), loaded_at=0.0)
    sess = session(store)
    x = feeds("tile-fp32")
    clean = sess.run(None, x)[0]
    bit = (store.slots[0].nbytes + store.slots[1].nbytes) * 8 + 31  # sign bit of conv2.w[0, 0, 0, 0]
    assert store.flip(0, bit) == "conv2.w"
    assert not np.array_equal(sess.run(None, x)[0], clean)

    per_step, found, checked, step = 100, [], 0, 0
    while checked < store.blocks:  # one sweep, 100 blocks a call
        step += 1
        found += store.scrub(now=float(step), max_blocks=min(per_step, store.blocks - checked))
        checked += per_step
    assert len(found) == 1
    corrupt = found[0]
    assert "conv2.w" in corrupt.tensors and corrupt.replica == 0 and corrupt.clean_at == 0.0
    repairs = store.repair(found, now=99.0, reload=lambda: verified_reload("tile-fp32"))
    assert [(r.source, r.bits, r.tensors) for r in repairs] == [("file", 1, ("conv2.w",))]
    assert np.array_equal(sess.run(None, x)[0], clean)
    assert store.mismatched_blocks(0) == []


def test_multi_bit_upsets_across_blocks_and_replicas() -> None:
    store = WeightStore("digits-int8", model_bytes("digits-int8"), replicas=2)
    sessions = [session(store, r) for r in (0, 1)]
    x = feeds("digits-int8")
    clean = sessions[0].run(None, x)[0]
    rng = np.random.default_rng(3)
    bits = rng.choice(store.weight_bytes * 8, size=6, replace=False)
    for i, bit in enumerate(bits):
        store.flip(i % 2, int(bit))
    found = store.verify_all(now=5.0)
    assert {c.replica for c in found} == {0, 1}
    reloads = []
    repairs = store.repair(found, 6.0, reload=lambda: reloads.append(1) or verified_reload("digits-int8"))
    assert {r.source for r in repairs} <= {"replica", "file"}
    assert sum(r.bits for r in repairs) == len(bits)
    assert len(reloads) <= 1
    assert store.verify_all(now=7.0) == []
    for s in sessions:
        assert np.array_equal(s.run(None, x)[0], clean)


def test_corrupted_checksum_word_is_recomputed_not_the_weights() -> None:
    store = WeightStore("digits-fp32", model_bytes("digits-fp32"))
    before = store.array(0, "fc1.w").copy()
    store.golden[3] ^= np.uint32(1 << 7)
    found = store.verify_all(now=1.0)
    assert [c.block for c in found] == [3]
    repairs = store.repair(found, 2.0, reload=lambda: verified_reload("digits-fp32"))
    assert [(r.source, r.bits) for r in repairs] == [("table", 0)]
    assert np.array_equal(store.array(0, "fc1.w"), before)
    assert store.verify_all(now=3.0) == []


def test_repair_refuses_an_untrusted_file() -> None:
    store = WeightStore("digits-fp32", model_bytes("digits-fp32"))
    store.flip(0, 12345)

    def tampered() -> bytes:
        raise ValueError("digits-fp32: sha256 mismatch")

    with pytest.raises(ValueError, match="sha256"):
        store.repair(store.verify_all(1.0), 2.0, reload=tampered)


def test_scrubber_sweeps_each_store_once_per_period() -> None:
    stores = [WeightStore(n, model_bytes(n)) for n in ("tile-int8", "digits-fp32")]
    scrubber = Scrubber(reload=verified_reload, period_s=10.0)
    for s in stores:
        scrubber.add(s)
    scrubber.step(0.0)
    flipped_at = 0.5
    stores[0].flip(0, stores[0].weight_bytes * 8 - 1)  # the last weight bit: the end of the sweep
    checked = 0
    found_at = None
    for k in range(1, 21):
        report = scrubber.step(k * 1.0)
        checked += report.checked
        if report.found:
            found_at = k * 1.0
            assert [r.source for r in report.repaired] == ["file"] and not report.failed
    assert found_at is not None and found_at - flipped_at <= 10.0 + 1.0
    assert checked == 2 * sum(s.blocks for s in stores)  # 20 s at a 10 s period: two sweeps
    assert all(s.verify_all(30.0) == [] for s in stores)


def test_store_refuses_what_it_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one replica"):
        WeightStore("digits-fp32", model_bytes("digits-fp32"), replicas=0)
    store = WeightStore("digits-fp32", model_bytes("digits-fp32"))
    with pytest.raises(ValueError, match="outside"):
        store.flip(0, store.weight_bytes * 8)
