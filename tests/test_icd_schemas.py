"""``ground icd schemas -o DIR``: one JSON Schema per message, and real messages validate against them.

jsonschema is not a dependency, so a minimal validator for the keywords pydantic emits is written here
(type, const, enum, required, properties, additionalProperties, propertyNames, $ref/$defs, anyOf/oneOf,
pattern, minimum/maximum, min/maxLength, items, min/maxItems, min/maxProperties).
"""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from link.codec import encode, pack_tensors
from link.messages import ALL_MESSAGES, Command, JobRequest, Ping
from link.sequence import SEQUENCE_MESSAGES
from link.uplink import UPLOAD_MESSAGES
from tests.support import REPO

TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}


def problems(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> list[str]:
    """Every way ``value`` violates ``schema`` (an empty list when it is valid)."""
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        return problems(value, root["$defs"][ref.removeprefix("#/$defs/")], root, path)
    out: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(isinstance(value, TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in types)
        if not ok:
            return [f"{path}: expected {schema['type']}, got {type(value).__name__}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: not one of {schema['enum']}")
    for key, combine in (("anyOf", any), ("oneOf", None)):
        if key in schema:
            results = [problems(value, sub, root, path) for sub in schema[key]]
            n_ok = sum(1 for r in results if not r)
            if (combine is any and n_ok == 0) or (combine is None and n_ok != 1):
                out.append(f"{path}: {key} failed ({n_ok} matched)")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1 << 62):
            out.append(f"{path}: length out of range")
    in_range = schema.get("minimum", -float("inf")) <= value <= schema.get("maximum", float("inf")) \
        if isinstance(value, int | float) and not isinstance(value, bool) else True
    if not in_range:
        out.append(f"{path}: {value} out of range")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1 << 62):
            out.append(f"{path}: item count out of range")
        if "items" in schema:
            for i, item in enumerate(value):
                out += problems(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{path}: missing required {name!r}")
        if len(value) < schema.get("minProperties", 0) or len(value) > schema.get("maxProperties", 1 << 62):
            out.append(f"{path}: property count out of range")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if "propertyNames" in schema:
                out += problems(name, schema["propertyNames"], root, f"{path}.<key {name}>")
            if name in props:
                out += problems(item, props[name], root, f"{path}.{name}")
            elif extra is False:
                out.append(f"{path}: unknown field {name!r}")
            elif isinstance(extra, dict):
                out += problems(item, extra, root, f"{path}.{name}")
    return out


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("schemas")
    r = subprocess.run([sys.executable, "-m", "ground.cli", "icd", "schemas", "-o", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(Path(line).name for line in r.stdout.split()) == sorted(p.name for p in out.iterdir())
    return out


def load(schema_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((schema_dir / f"{name}.schema.json").read_text())  # type: ignore[no-any-return]


def test_a_schema_per_message(schema_dir: Path) -> None:
    names = {m.__name__ for m in (*ALL_MESSAGES, *UPLOAD_MESSAGES, *SEQUENCE_MESSAGES)} | {"ModelManifest"}
    assert {p.name for p in schema_dir.iterdir()} == {f"{n}.schema.json" for n in names}
    for name in names:
        schema = load(schema_dir, name)
        assert schema["title"] == name and schema["type"] == "object"
        version = schema["properties"]["schema_version"]
        assert version.get("const", None) == 1 or version.get("enum") == [1], (name, version)
        assert schema["additionalProperties"] is False, name  # unknown fields are refused


def test_schema_version_is_required_as_the_decoder_requires_it(schema_dir: Path) -> None:
    """link.codec.decode refuses a message without schema_version, so the schema must require it."""
    for name in {m.__name__ for m in (*ALL_MESSAGES, *UPLOAD_MESSAGES)}:
        assert "schema_version" in load(schema_dir, name).get("required", []), name


def test_job_request_required_fields(schema_dir: Path) -> None:
    schema = load(schema_dir, "JobRequest")
    assert {"job_id", "model", "inputs"} <= set(schema["required"])
    assert schema["properties"]["priority"]["minimum"] == 0 and schema["properties"]["priority"]["maximum"] == 9


def test_real_framed_job_request_header_validates(schema_dir: Path) -> None:
    schema = load(schema_dir, "JobRequest")
    arrays: dict[str, np.ndarray] = {"image": np.zeros((1, 1, 8, 8), np.float32), "mask": np.ones((2,), np.uint8)}
    tensors, binary = pack_tensors(arrays)
    payload = encode(JobRequest(job_id="framed-1", model="digits-int8", inputs=tensors, priority=7,
                                deadline_utc=1.9e9), binary)
    assert payload[:4] == b"ORB1"
    (n,) = struct.unpack("<I", payload[4:8])
    header = json.loads(payload[8 : 8 + n])
    assert problems(header, schema, schema) == []


def test_hand_written_json_job_validates_and_broken_ones_do_not(schema_dir: Path) -> None:
    schema = load(schema_dir, "JobRequest")
    x = np.zeros((1, 1, 8, 8), dtype="<f4")
    job: dict[str, Any] = {
        "schema_version": 1, "job_id": "hand-1", "model": "digits-int8",
        "inputs": {"image": {"dtype": "float32", "shape": [1, 1, 8, 8],
                             "data_b64": base64.b64encode(x.tobytes()).decode()}},
    }
    assert problems(job, schema, schema) == []
    broken = {
        "missing job_id": ({k: v for k, v in job.items() if k != "job_id"}, "$: missing required 'job_id'"),
        "schema_version 2": ({**job, "schema_version": 2}, "$.schema_version: must be 1"),
        "unknown field": ({**job, "colour": "red"}, "$: unknown field 'colour'"),
        "priority 10": ({**job, "priority": 10}, "$.priority: 10 out of range"),
        "wildcard id": ({**job, "job_id": "a/#"}, "$.job_id: does not match"),
        "no inputs": ({**job, "inputs": {}}, "$.inputs: property count out of range"),
        "bad dtype": ({**job, "inputs": {"image": {**job["inputs"]["image"], "dtype": "complex64"}}},
                      "$.inputs.image.dtype: not one of"),
    }
    for case, (doc, reason) in broken.items():
        found = problems(doc, schema, schema)
        assert any(p.startswith(reason) for p in found), (case, found)


def test_command_with_discriminated_body_validates(schema_dir: Path) -> None:
    schema = load(schema_dir, "Command")
    doc = json.loads(encode(Command(command_id="c-1", issued_utc=1.0, body=Ping())))
    assert problems(doc, schema, schema) == []
    doc["body"] = {"action": "self_destruct"}
    assert problems(doc, schema, schema) != []
