"""Job sequences: a plan of job templates, each with a trigger, uploaded once and run onboard.

A :class:`Sequence` is a list of :class:`SequenceEntry`; each entry is a :class:`JobTemplate` (the
job it submits, as a :class:`link.messages.JobRequest` without its id) and a trigger:

- :class:`AtTime` — absolute: ``mission_s`` (mission time, the telemetry's ``t_s``) or ``utc``
  (an aware datetime). Waits for a valid timebase.
- :class:`After` — relative: ``delay_s`` after the previous entry fired (``of = "previous"``) or
  after the sequence was armed (``of = "start"``), counted on elapsed time (the board's monotonic
  clock; a simulator's mission elapsed time under one: docs/ops.md, "Which clock"), so a jump of the
  mission or UTC clock does not move it, and a flightd restart does not reset it.
- :class:`OrbitEvent` — ``eclipse_entry`` / ``eclipse_exit`` (``sunlit`` of the ``orbit`` channel, or
  ``power``), ``aos`` / ``los`` (acquisition / loss of signal: the ``contact`` flag), ``region_entry``
  / ``region_exit`` (``lat_deg`` / ``lon_deg`` inside a :class:`Region`), ``offset_s`` after the
  event, for ``count`` occurrences (None: every one). Waits for a valid timebase.
- :class:`Every` — periodic: every ``period_s`` (elapsed time, like :class:`After`) or every ``orbits``
  orbits (the ``orbit`` channel's ``period_s``; waits for a valid timebase), ``count`` times (None:
  until cancelled).

Each firing becomes an ordinary job with the idempotent id ``<sequence_id>_<entry>_<occurrence>``
(:func:`job_id_for`), submitted through flightd's normal intake so that the governor bounds it.
An occurrence found more than ``late_after_s`` past its due time (a reset, a late timebase) follows
the entry's ``late`` policy: ``run`` (submit it, late), ``skip`` (do not), ``fail`` (do not, and
abort the sequence); each is reported as an event.

Sequences travel in a :class:`SequenceCommand` on ``<base>/seq/cmd`` (signed exactly as
:class:`link.messages.Command` is, :mod:`link.auth`); the reply is a
:class:`link.messages.CommandReply` on ``cmd/<command_id>/reply``. Units: s, deg.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from link.messages import Auth, Identifier, TensorName, TopicId, WireModel
from link.numbers import INT_MAX, MAX_MISSION_S, Duration, LinkModel, MissionTime, UtcTime
from link.tensor import Tensor

SHORT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9\-]{0,23}$"
"""Sequence and entry names: up to 24 letters, digits and ``-``, so that ``<sequence>_<entry>_<n>`` is a
job id (:data:`link.messages.TOPIC_ID_PATTERN`: 64 characters, no ``.``, since job ids are topic
levels) that no other sequence, entry and occurrence give."""

ShortId = Annotated[str, Field(pattern=SHORT_ID_PATTERN)]

LatePolicy = Literal["run", "skip", "fail"]
SequenceState = Literal["armed", "done", "cancelled", "failed"]
OrbitEventKind = Literal["eclipse_entry", "eclipse_exit", "aos", "los", "region_entry", "region_exit"]

ORBIT_EVENTS: dict[str, tuple[str, str]] = {
    "eclipse_entry": ("sunlit", "fall"),
    "eclipse_exit": ("sunlit", "rise"),
    "aos": ("contact", "rise"),
    "los": ("contact", "fall"),
    "region_entry": ("region", "rise"),
    "region_exit": ("region", "fall"),
}
"""Each event: the telemetry flag it watches (``region``: inside the box) and the edge it fires on."""

MAX_ENTRIES = 256


Occurrences = Annotated[int, Field(ge=1, le=INT_MAX)]
"""How many times a trigger fires (``count``) or how many orbits apart (``orbits``): at least 1."""
Period = Annotated[float, Field(gt=0.0, le=MAX_MISSION_S)]
"""A period or a deadline, s: above zero, and no longer than a mission can be (so that a deadline
counted from now is still a date)."""


class Region(LinkModel):
    """A latitude/longitude box, deg. ``lon_min > lon_max`` wraps across the antimeridian."""

    lat_min: float = Field(ge=-90, le=90)
    lat_max: float = Field(ge=-90, le=90)
    lon_min: float = Field(ge=-180, le=180)
    lon_max: float = Field(ge=-180, le=180)

    @model_validator(mode="after")
    def _ordered(self) -> Region:
        if self.lat_min > self.lat_max:
            raise ValueError(f"lat_min {self.lat_min} is above lat_max {self.lat_max}")
        return self

    def contains(self, lat_deg: float, lon_deg: float) -> bool:
        lon = (lon_deg + 180.0) % 360.0 - 180.0
        inside_lon = (self.lon_min <= lon <= self.lon_max) if self.lon_min <= self.lon_max else (
            lon >= self.lon_min or lon <= self.lon_max)
        return self.lat_min <= lat_deg <= self.lat_max and inside_lon


class AtTime(LinkModel):
    """Fire once at mission time ``mission_s`` (s) or at ``utc``: exactly one is given."""

    kind: Literal["at"] = "at"
    mission_s: MissionTime | None = None
    utc: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one(self) -> AtTime:
        if (self.mission_s is None) == (self.utc is None):
            raise ValueError("an 'at' trigger gives exactly one of mission_s and utc")
        return self


class After(LinkModel):
    """Fire once ``delay_s`` (s, elapsed time) after the previous entry fired or after the start."""

    kind: Literal["after"] = "after"
    delay_s: Duration
    of: Literal["previous", "start"] = "previous"


class OrbitEvent(LinkModel):
    """Fire ``offset_s`` after each ``event`` seen in telemetry, ``count`` times (None: every one)."""

    kind: Literal["event"] = "event"
    event: OrbitEventKind
    channel: Identifier = "orbit"
    region: Region | None = None
    offset_s: Duration = 0.0
    count: Occurrences | None = 1

    @model_validator(mode="after")
    def _region(self) -> OrbitEvent:
        if self.event.startswith("region") != (self.region is not None):
            raise ValueError("region_entry / region_exit need a region, and only they take one")
        return self


class Every(LinkModel):
    """Fire every ``period_s`` s (elapsed time) or every ``orbits`` orbits, ``first_after_s`` after the
    start, ``count`` times (None: until cancelled); exactly one of ``period_s`` and ``orbits``."""

    kind: Literal["every"] = "every"
    period_s: Period | None = None
    orbits: Occurrences | None = None
    first_after_s: Duration = 0.0
    count: Occurrences | None = None

    @model_validator(mode="after")
    def _one(self) -> Every:
        if (self.period_s is None) == (self.orbits is None):
            raise ValueError("an 'every' trigger gives exactly one of period_s and orbits")
        return self


Trigger = Annotated[AtTime | After | OrbitEvent | Every, Field(discriminator="kind")]


class JobTemplate(LinkModel):
    """The job an entry submits: as :class:`link.messages.JobRequest`, without the id (derived) and
    with ``deadline_s`` relative to the firing instead of an absolute deadline."""

    model: Identifier
    version: Identifier | None = None
    inputs: dict[TensorName, Tensor] = Field(min_length=1, max_length=64)
    priority: int = Field(default=5, ge=0, le=9)
    deadline_s: Period | None = None

    @model_validator(mode="after")
    def _inline(self) -> JobTemplate:
        if any(t.data_b64 is None for t in self.inputs.values()):
            raise ValueError("sequence inputs carry their bytes inline (data_b64)")
        return self


class SequenceEntry(LinkModel):
    name: ShortId
    trigger: Trigger
    job: JobTemplate
    late: LatePolicy = "run"
    late_after_s: Duration = Field(default=30.0, description="grace before an occurrence counts as late, s")


class Sequence(LinkModel):
    """A named plan; ``sequence_id`` is chosen by the ground and is unique onboard."""

    sequence_id: ShortId
    description: str | None = Field(default=None, max_length=1000)
    entries: list[SequenceEntry] = Field(min_length=1, max_length=MAX_ENTRIES)

    @model_validator(mode="after")
    def _names(self) -> Sequence:
        names = [e.name for e in self.entries]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"entry names must be unique: {', '.join(dupes)}")
        return self


def job_id_for(sequence_id: str, entry: str, occurrence: int) -> str:
    """The idempotent job id of an entry's ``occurrence``-th firing (1-based)."""
    return f"{sequence_id}_{entry}_{occurrence}"


# ------------------------------------------------------------------------------------ commands


class UploadSequence(LinkModel):
    """Store and arm ``sequence`` (refused if a sequence of that id is already onboard)."""

    action: Literal["upload_sequence"] = "upload_sequence"
    sequence: Sequence


class ListSequences(LinkModel):
    action: Literal["list_sequences"] = "list_sequences"


class GetSequence(LinkModel):
    """The sequence, its state and its firings so far."""

    action: Literal["get_sequence"] = "get_sequence"
    sequence_id: ShortId


class CancelSequence(LinkModel):
    """Disarm the sequence; jobs it already submitted are not touched."""

    action: Literal["cancel_sequence"] = "cancel_sequence"
    sequence_id: ShortId


SequenceAction = Annotated[
    UploadSequence | ListSequences | GetSequence | CancelSequence, Field(discriminator="action")
]


class SequenceCommand(WireModel):
    """Ground -> satellite on ``seq/cmd``: as :class:`link.messages.Command` (same authentication,
    window and one use per ``command_id``), with a sequence body. Reply on ``cmd/<command_id>/reply``."""

    command_id: TopicId
    issued_utc: UtcTime
    body: SequenceAction
    auth: Auth | None = None


SEQUENCE_MESSAGES: tuple[type[WireModel], ...] = (SequenceCommand,)
"""The messages of this module that travel on their own (exported as JSON Schema by ``ground icd``)."""
