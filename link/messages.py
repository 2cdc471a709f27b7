"""Pydantic models of every message that crosses the link.

Invariants shared by all messages:
- ``schema_version`` is :data:`link.SCHEMA_VERSION`; anything else is refused with a clear reason.
- Unknown fields are refused (``extra="forbid"``): a typo on the ground is an error, not a silent default.
- Times are POSIX seconds (UTC, float). Durations are seconds. Powers are W, energies Wh, temperatures °C.
- Identifiers that appear in topics (job ids, command ids, satellite ids, model names) match
  :data:`ID_PATTERN`, so they can never contain MQTT wildcards or level separators.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from link.tensor import Tensor

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
TensorName = Annotated[str, Field(min_length=1, max_length=128)]


def _require_schema_version(schema: dict[str, Any]) -> None:
    """JSON Schema: ``schema_version`` is required (link.codec.decode refuses a message without it)."""
    required = schema.setdefault("required", [])
    if "schema_version" not in required:
        required.insert(0, "schema_version")


class WireModel(BaseModel):
    """Base of every message: strict about unknown fields, immutable, versioned."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_require_schema_version)

    schema_version: Literal[1] = 1


class Auth(BaseModel):
    """HMAC-SHA256 tag of a message (see :mod:`link.auth`). ``key_id`` names the shared key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: Identifier
    mac: str = Field(pattern=r"^[0-9a-f]{64}$")


# ----------------------------------------------------------------------------------------------- jobs


class JobState(enum.StrEnum):
    """Life of a job: queued -> running -> done | failed | cancelled | expired; rejected at intake."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class JobRequest(WireModel):
    """Ground -> satellite: run ``model`` on ``inputs``.

    ``job_id`` is chosen by the ground and is idempotent: a job id seen before is never run twice.
    ``priority`` 0..9, 9 most important. ``deadline_utc``: the result is worthless after this time,
    and the job expires instead of running.
    """

    job_id: Identifier
    model: Identifier
    version: Identifier | None = None
    inputs: dict[TensorName, Tensor] = Field(min_length=1, max_length=64)
    priority: int = Field(default=5, ge=0, le=9)
    deadline_utc: float | None = None
    submitted_utc: float | None = None
    auth: Auth | None = None


class JobStateEvent(WireModel):
    """Satellite -> ground, retained on ``jobs/<id>/state``: the job's latest state.

    ``reason`` explains every failed, cancelled, expired and rejected state. ``attempt`` counts
    starts (a job requeued after a reset or a preemption runs again with ``attempt`` + 1).
    """

    job_id: Identifier
    state: JobState
    at_utc: float
    reason: str | None = None
    model: str | None = None
    attempt: int = 0
    priority: int | None = None
    deadline_utc: float | None = None


class JobResult(WireModel):
    """Satellite -> ground, retained on ``results/<id>`` until the ground acknowledges it."""

    job_id: Identifier
    model: Identifier
    version: Identifier
    outputs: dict[TensorName, Tensor]
    started_utc: float
    finished_utc: float
    run_ms: float = Field(ge=0)
    provider: str
    attempt: int = 1


# -------------------------------------------------------------------------------- status, telemetry


class Mode(enum.StrEnum):
    """Governor mode (see docs/governor.md)."""

    NOMINAL = "nominal"
    THROTTLED = "throttled"
    SAFE = "safe"


class Status(WireModel):
    """Satellite -> ground, retained on ``status``; the broker publishes ``state="offline"`` as the
    last will when flightd's connection dies. Heartbeat period is ``heartbeat_s``."""

    sat: Identifier
    state: Literal["online", "offline"]
    at_utc: float | None = None
    flightd_version: str | None = None
    uptime_s: float | None = None
    heartbeat_s: float | None = None
    mode: Mode | None = None
    queue_depth: int | None = None
    running: list[str] = Field(default_factory=list)
    concurrency: int | None = None
    intra_op_threads: int | None = None
    duty_cycle: float | None = None
    budget_w: float | None = None
    providers: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    cycle_slip_ms: float | None = None
    keys: list[str] = Field(default_factory=list, description="fingerprints of the active signing keys")


class Telemetry(WireModel):
    """One telemetry sample on ``tlm/<channel>``.

    ``t_s`` is mission time in seconds (simulated time under the plant simulator, monotonic from an
    epoch otherwise); ``values`` maps measurement names to numbers, with units in the name's suffix
    (``_w``, ``_wh``, ``_v``, ``_a``, ``_c``, ``_s``) or dimensionless (``soc``, ``sunlit`` 0/1).
    The channels, their measurements and units are defined in :mod:`link.telemetry` (docs/icd.md's table).
    """

    sat: Identifier
    channel: Identifier
    t_s: float
    at_utc: float | None = None
    values: dict[str, float]


# ------------------------------------------------------------------------------------- commands


class CancelJob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["cancel"] = "cancel"
    job_id: Identifier


class AckResult(BaseModel):
    """The ground holds the result: the satellite may delete it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["ack_result"] = "ack_result"
    job_id: Identifier


class GetJob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["get_job"] = "get_job"
    job_id: Identifier


class ListJobs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["list_jobs"] = "list_jobs"
    states: list[JobState] | None = None
    limit: int = Field(default=1000, ge=1, le=100_000)


class Ping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["ping"] = "ping"


class ListModels(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["list_models"] = "list_models"


class ActivateModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["activate_model"] = "activate_model"
    name: Identifier
    version: Identifier


class RollbackModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["rollback_model"] = "rollback_model"
    name: Identifier


class Role(str, enum.Enum):  # noqa: UP042 (enum.StrEnum is 3.11+; the board runs 3.10)
    """What a signing key may ask for (flight.keyring.PERMISSIONS; docs/security.md)."""

    OPERATOR = "operator"
    USER = "user"


PUBLIC_KEY_PATTERN = r"^[0-9a-fA-F]{64}$"
"""A raw Ed25519 public key in hex (link.envelope)."""
FINGERPRINT_PATTERN = r"^[0-9a-f]{16}$"
"""A key's fingerprint: the first 8 bytes of SHA-256 over its raw public key, hex (link.envelope)."""


class AddKey(BaseModel):
    """Trust a new signing key (operators only). ``priority_cap``: a user key's highest job priority
    (default 5); an operator key has none."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["add_key"] = "add_key"
    name: Identifier
    role: Role
    public_key: str = Field(pattern=PUBLIC_KEY_PATTERN)
    priority_cap: int | None = Field(default=None, ge=0, le=9)


class RotateKey(BaseModel):
    """Replace a key by ``public_key`` (same name, role and cap); the old one is revoked (operators only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["rotate_key"] = "rotate_key"
    fingerprint: str = Field(pattern=FINGERPRINT_PATTERN)
    public_key: str = Field(pattern=PUBLIC_KEY_PATTERN)


class RevokeKey(BaseModel):
    """Stop trusting a key, for good (operators only; the last operator key cannot be revoked)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["revoke_key"] = "revoke_key"
    fingerprint: str = Field(pattern=FINGERPRINT_PATTERN)


class ListKeys(BaseModel):
    """The key ring: fingerprint, name, role, state of every key (no key material)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: Literal["list_keys"] = "list_keys"


CommandAction = Annotated[
    CancelJob | AckResult | GetJob | ListJobs | Ping | ListModels | ActivateModel | RollbackModel | AddKey
    | RotateKey | RevokeKey | ListKeys,
    Field(discriminator="action"),
]


class Command(WireModel):
    """Ground -> satellite on ``cmd``. The reply goes to ``cmd/<command_id>/reply``.

    When the satellite holds a command key, ``auth`` must be a valid tag (see :mod:`link.auth`) and
    ``issued_utc`` must lie within the configured window of the satellite's clock: a command id is
    accepted once.
    """

    command_id: Identifier
    issued_utc: float
    body: CommandAction
    auth: Auth | None = None


class CommandReply(WireModel):
    """Satellite -> ground on ``cmd/<command_id>/reply``."""

    command_id: Identifier
    ok: bool
    error: str | None = None
    data: Any = None


# --------------------------------------------------------------------------------------- events


class EventKind(enum.StrEnum):
    ERROR = "error"
    REJECTED = "rejected"
    MODE = "mode"
    MODEL = "model"
    LIFECYCLE = "lifecycle"
    LIMIT = "limit"


Severity = Literal["debug", "info", "warning", "error", "critical"]


class Event(WireModel):
    """Satellite -> ground on ``events``: something an operator should see (errors, rejected input,
    mode changes, model activation, start/stop)."""

    kind: EventKind
    severity: Severity = "info"
    message: str
    at_utc: float
    t_s: float | None = None
    job_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


ALL_MESSAGES: tuple[type[WireModel], ...] = (
    JobRequest,
    JobStateEvent,
    JobResult,
    Status,
    Telemetry,
    Command,
    CommandReply,
    Event,
)
