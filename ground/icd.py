"""Interface control exports: JSON Schema of every link message, for clients written in other
languages, and docs/icd.md's telemetry table, generated from the telemetry dictionary
(:mod:`link.telemetry`).

``python -m ground.icd docs/icd.md`` rewrites the table between its markers in place;
``--check`` only reports (exit 1) when the file differs from the dictionary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from link.manifest import ModelManifest
from link.messages import ALL_MESSAGES
from link.telemetry import CHANNELS
from link.uplink import UPLOAD_MESSAGES

TELEMETRY_TABLE_BEGIN = (
    "<!-- telemetry table: generated from link/telemetry.py by `python -m ground.icd docs/icd.md` -->"
)
TELEMETRY_TABLE_END = "<!-- end of telemetry table -->"


def write_schemas(directory: Path) -> list[Path]:
    """Write ``<Message>.schema.json`` for every message (and the model manifest); returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    models: list[type[BaseModel]] = [*ALL_MESSAGES, *UPLOAD_MESSAGES, ModelManifest]
    for model in models:
        path = directory / f"{model.__name__}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def telemetry_table() -> str:
    """The telemetry dictionary as a Markdown table: one row per value, channels in dictionary order,
    with each value's physical range (a value outside it is refused)."""
    lines = ["| channel | from | value | unit | range | meaning |", "|---|---|---|---|---|---|"]
    for channel in CHANNELS.values():
        for i, m in enumerate(channel.measurements):
            name, source = (f"`{channel.name}`", channel.source) if i == 0 else ("", "")
            lines.append(f"| {name} | {source} | `{m.key}` | {m.unit} | {m.range_text} | {m.description} |")
    return "\n".join(lines) + "\n"


def with_telemetry_table(doc: str) -> str:
    """``doc`` with the text between the telemetry table's markers replaced by :func:`telemetry_table`.

    Raises ValueError when the markers are missing or out of order."""
    start, end = doc.find(TELEMETRY_TABLE_BEGIN), doc.find(TELEMETRY_TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"telemetry table markers not found (need {TELEMETRY_TABLE_BEGIN!r} ... "
                         f"{TELEMETRY_TABLE_END!r})")
    head = doc[: start + len(TELEMETRY_TABLE_BEGIN)]
    return f"{head}\n{telemetry_table()}{doc[end:]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="regenerate docs/icd.md's telemetry table from link/telemetry.py")
    ap.add_argument("doc", type=Path, help="the ICD Markdown file (docs/icd.md)")
    ap.add_argument("--check", action="store_true", help="only report whether the table is current (exit 1 if not)")
    args = ap.parse_args(argv)
    text = args.doc.read_text()
    try:
        new = with_telemetry_table(text)
    except ValueError as exc:
        print(f"{args.doc}: {exc}", file=sys.stderr)
        return 2
    if new == text:
        return 0
    if args.check:
        print(f"{args.doc}: the telemetry table differs from link/telemetry.py; run python -m ground.icd {args.doc}",
              file=sys.stderr)
        return 1
    args.doc.write_text(new)
    print(f"{args.doc}: telemetry table rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
