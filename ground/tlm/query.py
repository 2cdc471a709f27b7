"""Reading an archive out: time bounds as the operator types them, JSON Lines and CSV output.

A time bound ``T`` is either a number, mission seconds compared with the message's ``t_s`` (messages
without ``t_s`` — status, job states, results — never match a numeric bound), or an ISO-8601 date-time
(``2025-06-01T12:00:00Z``; no zone means UTC), compared with the ground receive time ``rx_utc``.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from ground.tlm.archive import Archive, Record
from link.codec import peek_header


@dataclass(frozen=True)
class TimeBound:
    """``kind`` "t_s": mission seconds; "utc": POSIX seconds (receive time)."""

    kind: str
    value: float


def parse_time(text: str) -> TimeBound:
    """A number is mission time t_s (s); anything else must be an ISO-8601 date-time (UTC if no zone)."""
    try:
        return TimeBound("t_s", float(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"time {text!r} is neither mission seconds (a number) nor an ISO-8601 date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return TimeBound("utc", when.timestamp())


def bounds(t_from: str | None, t_to: str | None) -> dict[str, float | None]:
    """Keyword filters for :meth:`Archive.messages` from ``--from``/``--to`` texts."""
    out: dict[str, float | None] = {}
    for side, text in (("from", t_from), ("to", t_to)):
        if text is None:
            continue
        bound = parse_time(text)
        out[f"{'t' if bound.kind == 't_s' else 'utc'}_{side}"] = bound.value
    return out


def iso(posix_s: float) -> str:
    return datetime.fromtimestamp(posix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_dict(record: Record) -> dict[str, Any]:
    """A record as a JSON-ready dict; ``message`` is the payload's JSON header (tensor bytes of framed
    payloads are left out), ``payload_b64`` replaces it when the payload is not JSON."""
    doc = peek_header(record.payload)
    out: dict[str, Any] = {
        "id": record.id,
        "rx_utc": record.rx_utc,
        "rx_iso": iso(record.rx_utc),
        "t_s": record.t_s,
        "msg_utc": record.msg_utc,
        "sat": record.sat,
        "channel": record.channel,
        "topic": record.topic,
        "bytes": len(record.payload),
        "retained": record.retained,
        "truncated": record.truncated,
    }
    if doc is not None:
        out["message"] = doc
    else:
        out["payload_b64"] = base64.b64encode(record.payload).decode()
    return out


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; a telemetry message's ``values`` keep their bare names."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if not prefix and key == "schema_version":
            continue
        name = key if (not prefix or prefix == "values.") else f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, "values." if (not prefix and key == "values") else f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


BASE_COLUMNS = ("rx_iso", "rx_utc", "t_s", "msg_utc", "sat", "channel", "topic")


def write_jsonl(records: Iterable[Record], out: TextIO) -> int:
    """One JSON object per line; the number written."""
    n = 0
    for record in records:
        out.write(json.dumps(as_dict(record), separators=(",", ":")) + "\n")
        n += 1
    return n


def write_csv(records: Iterable[Record], out: TextIO) -> int:
    """A header row, then one row per message: the base columns and the message's fields flattened
    (telemetry values under their own names); columns are the union in order of first appearance."""
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = dict.fromkeys(BASE_COLUMNS)
    for record in records:
        d = as_dict(record)
        row = {k: d[k] for k in BASE_COLUMNS}
        message = d.get("message")
        if isinstance(message, dict):
            for key, value in flatten(message).items():
                if key not in row:
                    row[key] = value
        for key in row:
            columns.setdefault(key, None)
        rows.append(row)
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)


def query(
    archive: Archive,
    channels: Sequence[str] | None,
    t_from: str | None = None,
    t_to: str | None = None,
    sats: Sequence[str] | None = None,
) -> Iterator[Record]:
    """Records of ``channels`` between two operator time bounds (see :func:`parse_time`)."""
    return archive.messages(channels, sats=sats, **bounds(t_from, t_to))
