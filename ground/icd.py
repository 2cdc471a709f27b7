"""JSON Schema export of every link message, for clients written in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from link.manifest import ModelManifest
from link.messages import ALL_MESSAGES
from link.uplink import UPLOAD_MESSAGES


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
