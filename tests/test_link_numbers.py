"""Numbers that cannot be right are refused at the link (issue 10, item 1), in every message.

Each message type has a valid example document below holding every number field it can carry. The
coverage test walks the pydantic models themselves and fails when a float or int field is not in
its example, so a field added later is tested too. Non-finite literals are spliced into the JSON
text (Python's json reads ``NaN``, ``Infinity`` and ``1e999``; pydantic floats accept them).
"""

from __future__ import annotations

import json
import math
import types
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from link.codec import WireError, decode, peek_field
from link.manifest import ModelManifest
from link.messages import ALL_MESSAGES, JobRequest, Status, Telemetry, WireModel
from link.numbers import INT_MAX, MAX_UTC, first_bad_number
from link.sequence import SEQUENCE_MESSAGES
from link.telemetry import CHANNELS, value_problem
from link.uplink import UPLOAD_MESSAGES

SHA = "ab" * 32
TENSOR = {"dtype": "float32", "shape": [1, 2], "offset": 0, "nbytes": 8}
SPEC = {"name": "x", "dtype": "float32", "shape": [1, 2]}
MANIFEST = {"name": "m", "version": "1", "sha256": SHA, "size_bytes": 2048, "inputs": [SPEC], "outputs": [SPEC],
            "ir_version": 9, "opset_import": {"": 17}}

EXAMPLES: dict[str, dict[str, Any]] = {
    "JobRequest": {"job_id": "j1", "model": "m", "inputs": {"x": TENSOR}, "priority": 5,
                   "deadline_utc": 1.9e9, "submitted_utc": 1.8e9},
    "JobStateEvent": {"job_id": "j1", "state": "queued", "at_utc": 1.8e9, "attempt": 1, "priority": 5,
                      "deadline_utc": 1.9e9},
    "JobResult": {"job_id": "j1", "model": "m", "version": "1", "outputs": {"y": TENSOR}, "started_utc": 1.8e9,
                  "finished_utc": 1.8e9 + 1, "run_ms": 3.5, "provider": "CPUExecutionProvider", "attempt": 1,
                  "energy_j": 0.4, "energy_source": "measured",

                  "redundancy": "dmr", "check": "agreed", "runs": 2},
    "Status": {"sat": "sat1", "state": "online", "at_utc": 1.8e9, "uptime_s": 10.0, "heartbeat_s": 2.0,
               "queue_depth": 0, "concurrency": 1, "intra_op_threads": 2, "duty_cycle": 0.5, "budget_w": 40.0,
               "cycle_slip_ms": 1.5, "max_payload_bytes": 8388608, "broker_max_packet_bytes": 65536,
               "instance_id": "i1", "started_utc": 1.8e9,
               "model_limits": {"onnxruntime": "1.32.0", "max_model_bytes": 268435456, "max_ir_version": 14,
                                "opsets": {"": 28}},
               "outlook": {"busy_cores": 1.5, "orbit_busy_cores": 1.2, "in_eclipse": False, "phase_left_s": 900.0,
                           "mission_rate": 200.0, "committed_core_s": [0.0] * 9 + [2.5], "running_core_s": 0.5,
                           "job_core_s": {"m": 0.02}, "job_cost_age_s": {"m": 4.5}, "thermal_headroom_c": 30.0,
                           "soc": 0.7},
               "board": {"kind": "jetson", "model": "m", "summary": "s", "notes": ["n"], "actuators": ["a"]}},
    "Telemetry": {"sat": "sat1", "channel": "power", "t_s": 12.0, "at_utc": 1.8e9,
                  "values": {"soc": 0.8, "battery_v": 15.8, "solar_w": 80.0}},
    "Command": {"command_id": "c1", "issued_utc": 1.8e9, "body": {"action": "list_jobs", "limit": 10}},
    "Command/add_key": {"command_id": "c2", "issued_utc": 1.8e9,
                        "body": {"action": "add_key", "name": "lab", "role": "user", "public_key": SHA,
                                 "priority_cap": 3}},
    "Command/inject_fault": {"command_id": "c3", "issued_utc": 1.8e9,
                             "body": {"action": "inject_fault", "target": "weights", "replica": 1, "count": 2,
                                      "bits": 3, "seed": 7}},
    "CommandReply": {"command_id": "c1", "ok": True, "data": {"pong_utc": 1.8e9, "n": 3}},
    "Event": {"kind": "error", "message": "m", "at_utc": 1.8e9, "t_s": 5.0, "details": {"x": 1.5}},
    "UploadBegin": {"upload_id": "u1", "manifest": MANIFEST, "chunk_bytes": 1024, "n_chunks": 2,
                    "issued_utc": 1.8e9},
    "UploadChunk": {"upload_id": "u1", "index": 1, "sha256": SHA},
    "UploadQuery": {"upload_id": "u1", "query_id": "q1"},
    "UploadProgress": {"upload_id": "u1", "state": "receiving", "at_utc": 1.8e9, "received": 1, "n_chunks": 2,
                       "missing": [[1, 2]]},
    "SequenceCommand": {"command_id": "c2", "issued_utc": 1.8e9, "body": {"action": "upload_sequence", "sequence": {
        "sequence_id": "s1", "entries": [
            {"name": name, "trigger": trigger, "late_after_s": 30.0,
             "job": {"model": "m", "priority": 5, "deadline_s": 60.0,
                     "inputs": {"x": {"dtype": "float32", "shape": [1, 2], "data_b64": "AAAAAAAAAAA="}}}}
            for name, trigger in (
                ("at", {"kind": "at", "mission_s": 100.0}),
                ("after", {"kind": "after", "delay_s": 60.0}),
                ("event", {"kind": "event", "event": "region_entry", "offset_s": 5.0, "count": 2,
                           "region": {"lat_min": -10.0, "lat_max": 10.0, "lon_min": 170.0, "lon_max": -170.0}}),
                ("every", {"kind": "every", "period_s": 600.0, "first_after_s": 10.0, "count": 3}),
                ("orbits", {"kind": "every", "orbits": 2}),
            )]}}},
}
"""One example per message, and more under ``Message/variant`` where one cannot hold every number field
(a command body is one action of several)."""
MESSAGES: dict[str, type[WireModel]] = {m.__name__: m for m in (*ALL_MESSAGES, *UPLOAD_MESSAGES, *SEQUENCE_MESSAGES)}
UNREACHABLE: dict[str, set[str]] = {
    "SequenceCommand": {"body.sequence.entries.*.job.inputs.*.offset", "body.sequence.entries.*.job.inputs.*.nbytes"},
}
"""Number fields a message's own validators refuse (a sequence's tensors are inline: no offset, no size)."""


def model_of(example: str) -> type[WireModel]:
    return MESSAGES[example.split("/")[0]]


def doc_of(name: str) -> dict[str, Any]:
    return {"schema_version": 1, **json.loads(json.dumps(EXAMPLES[name]))}


def number_paths(doc: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Paths of every number (not bool) in a JSON document."""
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in number_paths(v, (*path, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in number_paths(v, (*path, i))]
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        return [path]
    return []


def with_literal(doc: dict[str, Any], path: tuple[str | int, ...], literal: str) -> bytes:
    """``doc`` as JSON text with the number at ``path`` replaced by ``literal`` (e.g. ``NaN``)."""
    marker = "__NUMBER_UNDER_TEST__"
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = marker
    return json.dumps(doc).replace(f'"{marker}"', literal).encode()


def dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path)


def numeric_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted paths of the float/int fields of ``model`` and the models it nests (dict keys as ``*``)."""
    out: set[str] = set()

    def walk(annotation: Any, path: str) -> None:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            walk(typing.get_args(annotation)[0], path)
        elif origin in (typing.Union, types.UnionType):
            for arg in typing.get_args(annotation):
                walk(arg, path)
        elif origin is dict:
            walk(typing.get_args(annotation)[1], f"{path}.*")
        elif origin in (list, tuple):
            for arg in typing.get_args(annotation):
                if arg is not Ellipsis:
                    walk(arg, f"{path}.*")
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.update(numeric_fields(annotation, f"{path}."))
        elif annotation in (float, int):
            out.add(path)

    for name, info in model.model_fields.items():
        walk(info.annotation, f"{prefix}{name}")
    return out - {f"{prefix}schema_version"}


def matches(pattern: str, path: tuple[str | int, ...]) -> bool:
    """A field pattern of numeric_fields (``*`` for one dict key or list index) against a concrete path."""
    parts = pattern.split(".")
    return len(parts) == len(path) and all(p in ("*", str(k)) for p, k in zip(parts, path, strict=True))


def test_every_numeric_field_of_every_message_is_in_its_example() -> None:
    """A number field without an example would escape the tests below: each one must be exercised."""
    assert {example.split("/")[0] for example in EXAMPLES} == set(MESSAGES)
    assert {"deadline_utc", "priority", "inputs.*.shape.*", "inputs.*.offset"} <= numeric_fields(JobRequest)
    assert {"values.*", "t_s"} <= numeric_fields(Telemetry)
    for name, model in MESSAGES.items():
        paths = []
        for example in (e for e in EXAMPLES if e.split("/")[0] == name):
            doc = doc_of(example)
            decode(json.dumps(doc).encode(), model)  # the example itself is valid
            paths += number_paths(doc)
        fields = numeric_fields(model) - UNREACHABLE.get(name, set())
        missing = {f for f in fields if not any(matches(f, p) for p in paths)}
        assert not missing, f"{name}: number fields without an example: {sorted(missing)}"


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]
CASES = [(name, path) for name in EXAMPLES for path in number_paths(doc_of(name)) if path != ("schema_version",)]
"""(message, path of a number): schema_version is left out (another version is refused as such)."""


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(CASES), literal=st.sampled_from(NON_FINITE))
def test_a_non_finite_number_anywhere_is_refused_naming_its_field(
    case: tuple[str, tuple[str | int, ...]], literal: str
) -> None:
    name, path = case
    payload = with_literal(doc_of(name), path, literal)
    with pytest.raises(WireError) as err:
        decode(payload, model_of(name))
    assert f"{dotted(path)}: non-finite number" in str(err.value), str(err.value)


@settings(max_examples=100, deadline=None)
@given(case=st.sampled_from(CASES), big=st.integers(min_value=INT_MAX + 1, max_value=10**40),
       sign=st.sampled_from([1, -1]))
def test_an_integer_beyond_64_bits_anywhere_is_refused_naming_its_field(
    case: tuple[str, tuple[str | int, ...]], big: int, sign: int
) -> None:
    name, path = case
    payload = with_literal(doc_of(name), path, str(sign * big))
    with pytest.raises(WireError, match=rf"{dotted(path)}: an integer of \d+ digits is outside the 64-bit range"):
        decode(payload, model_of(name))


def test_an_integer_longer_than_python_reads_is_a_wire_error_not_a_crash() -> None:
    payload = b'{"schema_version": 1, "job_id": "j1", "priority": ' + b"9" * 5000 + b"}"
    with pytest.raises(WireError, match="a number has too many digits"):
        decode(payload, JobRequest)
    assert peek_field(payload, "job_id") is None  # the refusal path reads nothing, raises nothing


def test_the_nan_deadline_of_the_issue_is_refused_but_its_job_id_is_read() -> None:
    payload = (b'{"schema_version": 1, "job_id": "nan-deadline", "model": "m", "deadline_utc": NaN,'
               b' "inputs": {"x": {"dtype": "float32", "shape": [1], "data_b64": "AAAAAA=="}}}')
    with pytest.raises(WireError, match="invalid JobRequest: deadline_utc: non-finite number NaN"):
        decode(payload, JobRequest)
    assert peek_field(payload, "job_id") == "nan-deadline"  # so the rejection names the job


@pytest.mark.parametrize(("field", "value"), [
    ("deadline_utc", -1.0), ("deadline_utc", MAX_UTC + 1), ("submitted_utc", 1e300), ("priority", 10),
])
def test_impossible_job_numbers_are_refused(field: str, value: float) -> None:
    doc = doc_of("JobRequest")
    doc[field] = value
    with pytest.raises(WireError, match=rf"invalid JobRequest: {field}: "):
        decode(json.dumps(doc).encode(), JobRequest)


@pytest.mark.parametrize(("field", "value"), [
    ("at_utc", -5.0), ("uptime_s", -1.0), ("heartbeat_s", -2.0), ("queue_depth", -1), ("duty_cycle", 1.5),
    ("budget_w", -3.0), ("cycle_slip_ms", -0.1), ("max_payload_bytes", -1), ("started_utc", 1e13),
])
def test_impossible_status_numbers_are_refused(field: str, value: float) -> None:
    doc = doc_of("Status")
    doc[field] = value
    with pytest.raises(WireError, match=rf"invalid Status: {field}: "):
        decode(json.dumps(doc).encode(), Status)


def test_mission_time_is_never_negative() -> None:
    doc = doc_of("Telemetry")
    doc["t_s"] = -0.5
    with pytest.raises(WireError, match="invalid Telemetry: t_s: "):
        decode(json.dumps(doc).encode(), Telemetry)


MEASUREMENTS = [(ch.name, m) for ch in CHANNELS.values() for m in ch.measurements]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), case=st.sampled_from(MEASUREMENTS))
def test_telemetry_outside_the_physical_range_is_refused_inside_it_accepted(data: st.DataObject, case: Any) -> None:
    channel, m = case
    if m.low is None and m.high is None:
        return  # no range (battery current): only finiteness applies, tested above
    sides = [s for s, bound in (("low", m.low), ("high", m.high)) if bound is not None]
    side = data.draw(st.sampled_from(sides))
    bound = m.low if side == "low" else m.high
    assert bound is not None
    beyond = data.draw(st.floats(min_value=1e-6, max_value=1e6)) * max(1.0, abs(bound))
    bad = bound - beyond if side == "low" else bound + beyond
    doc = {"schema_version": 1, "sat": "sat1", "channel": channel, "t_s": 1.0, "values": {m.key: bad}}
    with pytest.raises(WireError, match=rf"values: {m.key} = .* is outside its physical range"):
        decode(json.dumps(doc).encode(), Telemetry)
    lo = m.low if m.low is not None else bound - 1e3
    hi = m.high if m.high is not None else bound + 1e3
    good = data.draw(st.floats(min_value=lo, max_value=hi))
    doc["values"] = {m.key: good}
    assert decode(json.dumps(doc).encode(), Telemetry).message.values[m.key] == good


def test_named_physical_ranges() -> None:
    """The ranges the issue names, and values no sensor can read."""
    assert value_problem("power", "soc", 1.5) is not None and value_problem("power", "soc", -0.01) is not None
    assert value_problem("thermal", "board_c", -273.2) is not None
    assert value_problem("thermal", "board_c", -273.15) is None
    assert value_problem("power", "solar_w", -1.0) is not None
    assert value_problem("power", "battery_a", -20.0) is None  # charging: negative current is real
    assert value_problem("orbit", "period_s", 100.0) is not None  # no Earth orbit is that short
    assert value_problem("orbit", "illumination", 1.0000000000000304) is None  # rounding, not a reading error
    assert value_problem("power", "mystery", 1e300) is None and value_problem("power", "mystery", math.nan)
    assert value_problem("nochannel", "x", math.inf) is not None


@pytest.mark.parametrize("model", [*ALL_MESSAGES, *UPLOAD_MESSAGES, *SEQUENCE_MESSAGES, ModelManifest])
def test_no_message_built_in_code_can_carry_a_non_finite_float(model: type[BaseModel]) -> None:
    """What flightd and the ground send is built in code: the same rule holds there (allow_inf_nan=False),
    in the message and in every model it nests."""
    seen: set[type[BaseModel]] = set()

    def walk(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.add(annotation)
                for info in annotation.model_fields.values():
                    walk(info.annotation)
            return
        for arg in typing.get_args(annotation):
            walk(arg)

    walk(model)
    assert {m.__name__ for m in seen if m.model_config.get("allow_inf_nan") is not False} == set()


def test_impossible_sequence_numbers_are_refused() -> None:
    """A sequence is a message too: negative delays, mission times and counts cannot be run."""
    for entry, where, key, value in ((0, "trigger", "mission_s", -1.0), (1, "trigger", "delay_s", -5.0),
                                     (2, "trigger", "offset_s", -1.0), (2, "trigger", "count", 0),
                                     (3, "trigger", "period_s", 0.0), (3, "trigger", "first_after_s", -1.0),
                                     (4, "trigger", "orbits", 0), (0, "job", "deadline_s", 0.0),
                                     (0, "job", "deadline_s", 2e10), (1, "", "late_after_s", -1.0)):
        doc = doc_of("SequenceCommand")
        node = doc["body"]["sequence"]["entries"][entry]
        (node[where] if where else node)[key] = value
        with pytest.raises(WireError, match=rf"invalid SequenceCommand: .*{key}"):
            decode(json.dumps(doc).encode(), MESSAGES["SequenceCommand"])


def test_building_a_message_with_nan_fails_before_anything_is_sent() -> None:
    with pytest.raises(ValidationError, match="finite number"):
        JobRequest(job_id="j", model="m", inputs={"x": TENSOR}, deadline_utc=math.nan)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="finite number"):
        Telemetry(sat="s", channel="custom", t_s=0.0, values={"x": math.inf})


def test_first_bad_number_walks_any_depth_and_ignores_strings_and_bools() -> None:
    assert first_bad_number({"a": [1, {"b": [2.0, math.nan]}]}) == ("a.1.b.1", "non-finite number NaN (numbers on "
                                                                      "the link must be finite)")
    assert first_bad_number({"a": "NaN", "b": True, "c": [1e308, -(2**63) + 1]}) is None
    assert first_bad_number(math.inf) is not None and first_bad_number(math.inf)[0] == "message"  # type: ignore[index]
