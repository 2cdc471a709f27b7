"""``ground seq validate|upload|list|show|cancel``: job sequences (:mod:`link.sequence`) from a file.

A sequence file is TOML or JSON with the fields of :class:`link.sequence.Sequence`. A job's
``inputs`` may name arrays on disk instead of carrying tensors: a string is an ``.npz`` (inputs by
its keys), a table of strings maps input names to ``.npy`` files; paths are relative to the file.
They are read and inlined (JSON + base64) before validation. ``validate`` works offline, against a
model registry directory (``--models DIR``) or the satellite's list (``--online``) when given.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ground.client import GroundError
from ground.options import client_from_args, print_json
from link.codec import describe_validation_error, pack_tensors
from link.manifest import TensorSpec
from link.sequence import AtTime, CancelSequence, GetSequence, ListSequences, Sequence, UploadSequence


class SequenceFileError(GroundError):
    """A sequence file that cannot be read or does not validate; ``str()`` says where and why."""


def _arrays(spec: Any, base: Path) -> dict[str, np.ndarray[Any, Any]] | None:
    if isinstance(spec, str):
        with np.load(base / spec, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    if isinstance(spec, dict) and spec and all(isinstance(v, str) for v in spec.values()):
        return {name: np.load(base / path, allow_pickle=False) for name, path in spec.items()}
    return None


def load_sequence_file(path: Path) -> Sequence:
    """The sequence in ``path`` (``.toml`` or ``.json``), inputs inlined; SequenceFileError otherwise."""
    try:
        text = path.read_text()
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise SequenceFileError(f"{path}: {exc}") from None
    for i, entry in enumerate(doc.get("entries", []) if isinstance(doc, dict) else []):
        job = entry.get("job") if isinstance(entry, dict) else None
        if not isinstance(job, dict):
            continue
        try:
            arrays = _arrays(job.get("inputs"), path.parent)
        except (OSError, ValueError) as exc:
            raise SequenceFileError(f"{path}: entries[{i}].job.inputs: {exc}") from None
        if arrays is not None:
            tensors, _ = pack_tensors(arrays, framed=False)
            job["inputs"] = {k: t.model_dump(exclude_none=True) for k, t in tensors.items()}
    try:
        return Sequence.model_validate(doc)
    except ValidationError as exc:
        raise SequenceFileError(f"{path}: {describe_validation_error(exc)}") from None


def check_models(sequence: Sequence, listing: list[dict[str, Any]]) -> list[str]:
    """Problems of ``sequence`` against a model listing (``list_models``' answer): unknown models or
    versions, inputs that do not fit. Empty when it would be accepted."""
    problems = []
    for entry in sequence.entries:
        job = entry.job
        rows = [m for m in listing if m["name"] == job.model and (m["version"] == job.version if job.version
                                                                   else m["active"])]
        if not rows:
            problems.append(f"entry {entry.name}: model {job.model}{'/' + job.version if job.version else ''} "
                            "is not onboard")
            continue
        declared = {d["name"]: TensorSpec.model_validate(d) for d in rows[0]["inputs"]}
        if set(declared) != set(job.inputs):
            problems.append(f"entry {entry.name}: inputs {sorted(job.inputs)} but the model takes {sorted(declared)}")
            continue
        for name, tensor in job.inputs.items():
            reason = declared[name].accepts(tensor.dtype, list(tensor.shape))
            if reason:
                problems.append(f"entry {entry.name}: {reason}")
    return problems


def past_entries(sequence: Sequence, now: datetime.datetime) -> list[str]:
    """Warnings for ``at`` entries whose UTC time is already before ``now`` (an aware datetime): onboard
    they are late at once and their ``late`` policy decides (``fail`` ends the sequence)."""
    warnings = []
    for entry in sequence.entries:
        trigger = entry.trigger
        if isinstance(trigger, AtTime) and trigger.utc is not None and trigger.utc < now:
            days = (now - trigger.utc).total_seconds() / 86_400
            warnings.append(f"entry {entry.name}: at {trigger.utc.isoformat()} is {days:.1f} days in the past: "
                            f"late at once onboard (late = {entry.late})")
    return warnings


def _registry_listing(models_dir: Path) -> list[dict[str, Any]]:
    from flight.registry import ModelRegistry

    registry = ModelRegistry(models_dir, providers=["CPUExecutionProvider"])
    registry.scan()
    return registry.listing()


async def cmd_validate(args: argparse.Namespace) -> int:
    sequence = load_sequence_file(args.file)
    listing = None
    if args.models is not None:
        listing = _registry_listing(args.models)
    elif args.online:
        async with client_from_args(args) as ground:
            listing = await ground.models()
    problems = check_models(sequence, listing) if listing is not None else []
    for warning in past_entries(sequence, datetime.datetime.now(datetime.UTC)):
        print(f"{args.file}: warning: {warning}")
    for p in problems:
        print(f"{args.file}: {p}")
    if problems:
        return 1
    against = " against the models" if listing is not None else ""
    print(f"{args.file}: sequence {sequence.sequence_id} ({len(sequence.entries)} entries) is valid{against}")
    return 0


async def cmd_upload(args: argparse.Namespace) -> int:
    sequence = load_sequence_file(args.file)
    for warning in past_entries(sequence, datetime.datetime.now(datetime.UTC)):
        print(f"{args.file}: warning: {warning}")
    async with client_from_args(args) as ground:
        data = await ground.sequence_command(UploadSequence(sequence=sequence))
    print(f"{data['sequence_id']} {data['state']} ({data['entries']} entries)")
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        data = await ground.sequence_command(ListSequences())
    if args.json:
        print_json(data)
    else:
        for s in data:
            handled = ", ".join(f"{k}:{v}" for k, v in s["handled"].items())
            print(f"{s['sequence_id']:24s} {s['state']:9s} entries={s['entries']} fired={{{handled}}}")
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        print_json(await ground.sequence_command(GetSequence(sequence_id=args.sequence_id)))
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with client_from_args(args) as ground:
        data = await ground.sequence_command(CancelSequence(sequence_id=args.sequence_id))
    print(f"{data['sequence_id']} {data['state']}")
    return 0


def add_seq_parser(subparsers: Any) -> None:
    """Add ``seq`` (validate/upload/list/show/cancel) to the ``ground`` command's subparsers."""
    seq = subparsers.add_parser("seq", help="job sequences").add_subparsers(dest="seq_command", required=True)
    s = seq.add_parser("validate", help="check a sequence file offline")
    s.add_argument("file", type=Path)
    where = s.add_mutually_exclusive_group()
    where.add_argument("--models", type=Path, help="check models and inputs against this registry directory")
    where.add_argument("--online", action="store_true", help="check against the satellite's model list")
    s.set_defaults(handler=cmd_validate)
    s = seq.add_parser("upload", help="send a sequence (signed like commands) and arm it")
    s.add_argument("file", type=Path)
    s.set_defaults(handler=cmd_upload)
    s = seq.add_parser("list", help="sequences onboard")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_list)
    s = seq.add_parser("show", help="a sequence, its state and its firings")
    s.add_argument("sequence_id")
    s.set_defaults(handler=cmd_show)
    s = seq.add_parser("cancel", help="disarm a sequence")
    s.add_argument("sequence_id")
    s.set_defaults(handler=cmd_cancel)
