"""Numbers on the link: what a number in a message may be, and the base model that enforces it.

Two rules hold for every message on every topic (docs/icd.md, "Numbers"):

- **Finite.** ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's :mod:`json` reads, as it reads
  ``1e999`` as infinity) are refused, with the field named. :func:`first_bad_number` finds them in a
  parsed JSON document, whatever the field's type (``Any`` fields included);
  :class:`LinkModel`'s ``allow_inf_nan=False`` refuses them in every float field of a message built
  in code, so nothing non-finite is ever sent either.
- **Physically possible.** A time is a date (:data:`UtcTime`, from 1970 up to the last second of year
  9999, what :class:`datetime.datetime` can hold), a duration, count, power or size is not negative,
  a fraction lies in 0..1, a mission time in :data:`MissionTime`'s range. Integers are 64-bit
  (``|n| <= 2**63 - 1``, SQLite's INTEGER and numpy's int64, where they end up). Telemetry values
  have the physical ranges of the telemetry dictionary (:mod:`link.telemetry`).
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_UTC = 253_402_300_799.0
"""9999-12-31T23:59:59Z in POSIX seconds: the last time :class:`datetime.datetime` represents."""
MAX_MISSION_S = 1e10
"""Mission seconds beyond this (317 years) cannot be a mission time."""
INT_MAX = 2**63 - 1
"""Largest integer magnitude on the link (int64: SQLite INTEGER, numpy int64)."""

UtcTime = Annotated[float, Field(ge=0.0, le=MAX_UTC)]
"""POSIX seconds (UTC), a date between 1970 and the end of year 9999."""
MissionTime = Annotated[float, Field(ge=0.0, le=MAX_MISSION_S)]
"""Mission seconds (``Telemetry.t_s``): from the mission's epoch, never negative."""
Duration = Annotated[float, Field(ge=0.0)]
"""Seconds (or milliseconds where the name says ``_ms``), never negative."""
Watts = Annotated[float, Field(ge=0.0)]
"""A power drawn or allowed, W, never negative."""
Joules = Annotated[float, Field(ge=0.0)]
"""An energy, J, never negative."""
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
"""A share, 0..1."""
Count = Annotated[int, Field(ge=0, le=INT_MAX)]
"""How many of something (jobs, threads, bytes), never negative."""


class LinkModel(BaseModel):
    """Base of every pydantic model in link/: unknown fields refused, immutable, finite floats only."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _describe(value: float | int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{'' if value > 0 else '-'}Infinity (or a literal beyond ±1.8e308)"
    return f"an integer of {len(str(abs(value)))} digits"


def _bad(node: object) -> bool:
    if type(node) is float:
        return not math.isfinite(node)
    return type(node) is int and abs(node) > INT_MAX


def first_bad_number(doc: object) -> tuple[str, str] | None:
    """(field path, problem) of the first non-finite float or out-of-range integer in a parsed JSON
    document, in document order; None when every number is fine. Paths join keys and list indices
    with ``.`` as pydantic's error locations do (``inputs.image.shape.0``), ``message`` for the root.

    A plain scan decides (a few microseconds for a message); the path is only worked out for a
    document that has a bad number."""
    stack: list[object] = [doc]
    isfinite = math.isfinite
    while stack:  # _bad() inlined: this runs over every message flightd takes in
        node = stack.pop()
        if type(node) is float:
            if not isfinite(node):
                break
        elif type(node) is dict:
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
        elif type(node) is int and abs(node) > INT_MAX:
            break
    else:
        return None
    return _locate(doc)


def _locate(doc: object) -> tuple[str, str] | None:
    stack: list[tuple[str, object]] = [("", doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in reversed(list(enumerate(node))))
        elif _bad(node):
            assert isinstance(node, float | int)
            where = path or "message"
            if isinstance(node, float):
                return where, f"non-finite number {_describe(node)} (numbers on the link must be finite)"
            return where, f"{_describe(node)} is outside the 64-bit range (|n| <= 2**63 - 1)"
    return None
