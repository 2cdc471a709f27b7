"""Pydantic models of every message that crosses the link.

Invariants shared by all messages:
- ``schema_version`` is :data:`link.SCHEMA_VERSION`; anything else is refused with a clear reason.
- Unknown fields are refused (``extra="forbid"``): a typo on the ground is an error, not a silent default.
- Times are POSIX seconds (UTC, float). Durations are seconds. Powers are W, energies Wh, temperatures °C.
- Every number is finite and physically possible (:mod:`link.numbers`): NaN and infinities are refused
  in every field, times are dates, counts and durations are not negative, telemetry values lie in the
  telemetry dictionary's physical ranges (:mod:`link.telemetry`).
- Identifiers match :data:`ID_PATTERN`, so they can never contain MQTT wildcards or level separators;
  those that become a topic level (satellite, job, command and upload ids, telemetry channels) match the
  narrower :data:`TOPIC_ID_PATTERN` (no ``.``), so every broker orbitd runs on carries them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from link.numbers import Count, Duration, Fraction, Joules, LinkModel, MissionTime, UtcTime, Watts
from link.str_enum import StrEnum
from link.telemetry import Mode as Mode
from link.telemetry import value_problem
from link.tensor import Tensor

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
TOPIC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"
"""An identifier that is a topic level: :data:`ID_PATTERN` without ``.``. nats-server before 2.10 (Debian
ships 2.9.10) refuses a ``.`` in an MQTT topic: it disconnects the publisher and fails the subscription
(docs.nats.io, "MQTT Topics and NATS Subjects"; tests/test_nats_cluster.py)."""
TopicId = Annotated[str, Field(pattern=TOPIC_ID_PATTERN)]
_ID_RE = re.compile(ID_PATTERN)
_TOPIC_ID_RE = re.compile(TOPIC_ID_PATTERN)


def is_identifier(value: object, *, topic_level: bool = True) -> bool:
    """True when ``value`` is a str that pydantic's ``TopicId`` (``topic_level``) or ``Identifier``
    accepts. The whole string must match: Python's ``$`` also matches before a final newline, which
    pydantic's pattern does not, so ``re.match`` alone would pass ``"job1\\n"`` that no reply
    carrying it can validate (the fuzzing campaign's first find, docs/icd.md "Refusals")."""
    pattern = _TOPIC_ID_RE if topic_level else _ID_RE
    return isinstance(value, str) and pattern.fullmatch(value) is not None
TensorName = Annotated[str, Field(min_length=1, max_length=128)]


def _require_schema_version(schema: dict[str, Any]) -> None:
    """JSON Schema: ``schema_version`` is required (link.codec.decode refuses a message without it)."""
    required = schema.setdefault("required", [])
    if "schema_version" not in required:
        required.insert(0, "schema_version")


class WireModel(LinkModel):
    """Base of every message: strict about unknown fields, immutable, finite numbers only, versioned."""

    model_config = ConfigDict(json_schema_extra=_require_schema_version)

    schema_version: Literal[1] = 1


class Auth(LinkModel):
    """HMAC-SHA256 tag of a message (see :mod:`link.auth`). ``key_id`` names the shared key."""

    key_id: Identifier
    mac: str = Field(pattern=r"^[0-9a-f]{64}$")


# ----------------------------------------------------------------------------------------------- jobs


class JobState(StrEnum):
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


class Redundancy(StrEnum):
    """How a job's inference is checked against soft errors (docs/radiation.md): ``none`` one run;
    ``dmr`` two runs on independent weight memory, compared bit for bit, a third run votes on a
    mismatch; ``tmr`` three runs, the majority wins. Ordered none < dmr < tmr."""

    NONE = "none"
    DMR = "dmr"
    TMR = "tmr"


CheckStatus = Literal["single", "agreed", "voted"]
"""How a result was checked: ``single`` (one run, unchecked), ``agreed`` (every run gave the same
outputs), ``voted`` (runs disagreed and the majority's answer was taken). Runs that disagree with no
majority fail the job; they never give a result."""


class JobRequest(WireModel):
    """Ground -> satellite: run ``model`` on ``inputs``.

    ``job_id`` is chosen by the ground and is idempotent: a job id seen before is never run twice.
    ``priority`` 0..9, 9 most important. ``deadline_utc``: the result is worthless after this time,
    and the job expires instead of running. ``redundancy``: how the result is checked (None: the
    satellite's default for the model and priority); the governor may raise it while the spacecraft
    is in a high-flux region, never lower it (docs/radiation.md).
    """

    job_id: TopicId
    model: Identifier
    version: Identifier | None = None
    inputs: dict[TensorName, Tensor] = Field(min_length=1, max_length=64)
    priority: int = Field(default=5, ge=0, le=9)
    deadline_utc: UtcTime | None = None
    submitted_utc: UtcTime | None = None
    redundancy: Redundancy | None = None
    auth: Auth | None = None


class JobStateEvent(WireModel):
    """Satellite -> ground, retained on ``jobs/<id>/state``: the job's latest state.

    ``reason`` explains every failed, cancelled, expired and rejected state. ``attempt`` counts
    starts (a job requeued after a reset or a preemption runs again with ``attempt`` + 1).
    """

    job_id: TopicId
    state: JobState
    at_utc: UtcTime
    reason: str | None = None
    model: str | None = None
    attempt: Count = 0
    priority: int | None = Field(default=None, ge=0, le=9)
    deadline_utc: UtcTime | None = None


EnergySource = Literal["measured", "estimated"]
"""Where a job's energy comes from: ``measured``, the integral of the board's measured power above idle
over the run (flight.governor.energy); ``estimated``, busy core-seconds times the board profile's W per
core (a board without a power sensor)."""


class JobResult(WireModel):
    """Satellite -> ground, retained on ``results/<id>`` until the ground acknowledges it.

    ``energy_j``: the run's energy above the board's idle power (J), from ``energy_source``; None when
    flightd has neither a power sensor nor a governor's board profile to estimate it with.
    How it was checked (docs/radiation.md): ``redundancy`` the mode it ran under (the job's, or the
    governor's in a high-flux region), ``check`` the verdict, ``runs`` the inferences made,
    ``weights_scrubbed`` whether the model's weights are held in flightd's memory and scrubbed.
    ``recomputed``: why this result replaces an earlier one (the weights were found corrupt after the
    first run, or the stored result failed its checksum); None for a first result.
    """

    job_id: TopicId
    model: Identifier
    version: Identifier
    outputs: dict[TensorName, Tensor]
    started_utc: UtcTime
    finished_utc: UtcTime
    run_ms: Duration
    provider: str
    attempt: Count = 1
    energy_j: Joules | None = None
    energy_source: EnergySource | None = None
    redundancy: Redundancy = Redundancy.NONE
    check: CheckStatus = "single"
    runs: Count = 1
    weights_scrubbed: bool = False
    recomputed: str | None = None


# -------------------------------------------------------------------------------- status, telemetry


class BoardStatus(LinkModel):
    """The board flightd found at start (flight/board, docs/boards.md), in its retained status.

    ``kind``: ``raspberry-pi``, ``jetson`` or ``linux``; ``summary``: one line naming the board and the
    sources of its temperature, power and throttle flags; ``notes``: what was looked for and could not
    be read; ``actuators``: what the governor may steer on this board, or why not."""

    kind: str = Field(max_length=32)
    model: str = Field(max_length=256)
    summary: str = Field(max_length=2048)
    notes: list[Annotated[str, Field(max_length=512)]] = Field(default_factory=list, max_length=32)
    actuators: list[Annotated[str, Field(max_length=512)]] = Field(default_factory=list, max_length=32)


Domain = Annotated[str, Field(max_length=128)]
"""An ONNX operator set domain; "" is the default one (ai.onnx)."""


class ModelLimits(LinkModel):
    """What one satellite's model registry accepts (flightd advertises it in :class:`Status`).

    ``onnxruntime``: the version onboard; ``max_model_bytes``: the largest model file an upload may carry;
    ``max_ir_version``: the newest ONNX IR version that ONNX Runtime loads; ``opsets``: every operator
    domain it implements ("" = ai.onnx) -> the newest opset version it loads. A model that uses a domain
    not listed needs a custom-op library, which flightd never loads.
    """

    onnxruntime: str = Field(max_length=64)
    max_model_bytes: Count
    max_ir_version: Count
    opsets: dict[Domain, Count]


PRIORITY_LEVELS = 10
"""Job priorities 0..9 (:attr:`JobRequest.priority`)."""
NonNegative = Annotated[float, Field(ge=0.0)]


class DispatchOutlook(LinkModel):
    """What a fleet's ground dispatcher reads in a satellite's retained status to route a job there
    (docs/fleet.md, "The real fleet"; ``ground.fleet``), filled by flightd from its governor's decision
    and outlook and from its queue, at every heartbeat.

    ``busy_cores``: the busy cores the governor allows now (its budget to the next eclipse, thermal
    headroom and battery voltage included; 0 in SAFE). ``orbit_busy_cores``: the orbit-average busy
    cores the power system sustains (None until known). ``in_eclipse``, ``phase_left_s``: the current
    phase and the mission seconds to its end (None without a governor). ``mission_rate``: mission
    seconds per second of wall time (1 in flight; the warp under a plant simulator), to turn
    ``phase_left_s`` into the ground's seconds. ``committed_core_s``: queued work per priority, busy
    core-seconds as the onboard cost model estimates them (index = priority 0..9);
    ``running_core_s``: the work left of the running jobs. ``job_core_s``: one job's busy
    core-seconds per model name, as estimated onboard; ``job_cost_age_s``: wall seconds since that
    estimate was last measured (a model absent here was never measured: its figure is the seed), so
    a dispatcher can tell a figure no run has refreshed (docs/fleet.md, "Stale figures").
    ``thermal_headroom_c``: the smaller of
    (ceiling - temperature) of board and radiator, °C (negative beyond a ceiling). ``soc``: the
    latest state of charge."""

    busy_cores: NonNegative
    orbit_busy_cores: NonNegative | None = None
    in_eclipse: bool | None = None
    phase_left_s: Duration | None = None
    mission_rate: float = Field(default=1.0, gt=0.0)
    committed_core_s: list[NonNegative] = Field(min_length=PRIORITY_LEVELS, max_length=PRIORITY_LEVELS)
    running_core_s: NonNegative = 0.0
    job_core_s: dict[Identifier, NonNegative] = Field(default_factory=dict, max_length=256)
    job_cost_age_s: dict[Identifier, NonNegative] = Field(default_factory=dict, max_length=256)
    thermal_headroom_c: float | None = None
    soc: Fraction | None = None


class Status(WireModel):
    """Satellite -> ground, retained on ``status``; the broker publishes ``state="offline"`` as the
    last will when flightd's connection dies. Heartbeat period is ``heartbeat_s``.

    Sizes the ground checks before it publishes (:meth:`ground.client.GroundClient.submit`), bytes:
    ``max_payload_bytes`` (flightd's ``link.max_payload_bytes``) and ``broker_max_packet_bytes`` (the
    broker's ``max_packet_size`` as flightd is configured to know it; None: not configured). Who is
    publishing: ``instance_id`` (one flightd process), ``boot_id`` (the board's boot, from Linux's
    /proc/sys/kernel/random/boot_id) and ``started_utc``; a flightd that finds another instance
    online under its satellite id stops (docs/icd.md, "One flightd per satellite id"). The offline
    status (last will, clean stop) carries the sizes and the identity too. ``model_limits``: what the model
    registry accepts, so that ``ground model upload`` refuses a model before its first chunk. ``outlook``: what a fleet
    dispatcher routes by (:class:`DispatchOutlook`; online statuses only).

    ``intake``: ``open``; ``paused`` while the journal cannot be written (``intake_reason`` says why:
    a submission is then ``rejected`` with that reason, docs/icd.md "Storage faults"); ``draining``
    while flightd stops (submissions are journaled and run after the restart)."""

    sat: TopicId
    state: Literal["online", "offline"]
    at_utc: UtcTime | None = None
    flightd_version: str | None = None
    uptime_s: Duration | None = None
    heartbeat_s: Duration | None = None
    mode: Mode | None = None
    queue_depth: Count | None = None
    running: list[str] = Field(default_factory=list)
    concurrency: Count | None = None
    intra_op_threads: Count | None = None
    duty_cycle: Fraction | None = None
    budget_w: Watts | None = None
    providers: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    cycle_slip_ms: Duration | None = None
    max_payload_bytes: Count | None = None
    broker_max_packet_bytes: Count | None = None
    instance_id: Identifier | None = None
    boot_id: str | None = Field(default=None, max_length=64)
    started_utc: UtcTime | None = None
    keys: list[str] = Field(default_factory=list, max_length=256, description="fingerprints of the active signing keys")
    model_limits: ModelLimits | None = None
    outlook: DispatchOutlook | None = None
    intake: Literal["open", "paused", "draining"] | None = None
    intake_reason: str | None = Field(default=None, max_length=2000)
    board: BoardStatus | None = None


class Telemetry(WireModel):
    """One telemetry sample on ``tlm/<channel>``.

    ``t_s`` is mission time in seconds (simulated time under the plant simulator, monotonic from an
    epoch otherwise); ``values`` maps measurement names to numbers, with units in the name's suffix
    (``_w``, ``_wh``, ``_v``, ``_a``, ``_c``, ``_s``) or dimensionless (``soc``, ``sunlit`` 0/1).
    The channels, their measurements and units are defined in :mod:`link.telemetry` (docs/icd.md's table).
    """

    sat: TopicId
    channel: TopicId
    t_s: MissionTime
    at_utc: UtcTime | None = None
    values: dict[str, float] = Field(max_length=256)

    @field_validator("values")
    @classmethod
    def _physical(cls, values: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        """Every value the telemetry dictionary defines lies in its physical range."""
        channel = info.data.get("channel")
        if isinstance(channel, str):
            problems = [p for k, v in values.items() if (p := value_problem(channel, k, v)) is not None]
            if problems:
                raise PydanticCustomError("physical_range", "{problems}", {"problems": "; ".join(problems)})
        return values


# ------------------------------------------------------------------------------------- commands


class CancelJob(LinkModel):
    action: Literal["cancel"] = "cancel"
    job_id: TopicId


class AckResult(LinkModel):
    """The ground holds the result: the satellite may delete it."""

    action: Literal["ack_result"] = "ack_result"
    job_id: TopicId


class GetJob(LinkModel):
    action: Literal["get_job"] = "get_job"
    job_id: TopicId


class ListJobs(LinkModel):
    action: Literal["list_jobs"] = "list_jobs"
    states: list[JobState] | None = None
    limit: int = Field(default=1000, ge=1, le=100_000)


class Ping(LinkModel):
    action: Literal["ping"] = "ping"


class ListModels(LinkModel):
    action: Literal["list_models"] = "list_models"


class ActivateModel(LinkModel):
    action: Literal["activate_model"] = "activate_model"
    name: Identifier
    version: Identifier


class RollbackModel(LinkModel):
    action: Literal["rollback_model"] = "rollback_model"
    name: Identifier


class Role(StrEnum):
    """What a signing key may ask for (flight.keyring.PERMISSIONS; docs/security.md)."""

    OPERATOR = "operator"
    USER = "user"


PUBLIC_KEY_PATTERN = r"^[0-9a-fA-F]{64}$"
"""A raw Ed25519 public key in hex (link.envelope)."""
FINGERPRINT_PATTERN = r"^[0-9a-f]{16}$"
"""A key's fingerprint: the first 8 bytes of SHA-256 over its raw public key, hex (link.envelope)."""


class AddKey(LinkModel):
    """Trust a new signing key (operators only). ``priority_cap``: a user key's highest job priority
    (default 5); an operator key has none."""

    action: Literal["add_key"] = "add_key"
    name: Identifier
    role: Role
    public_key: str = Field(pattern=PUBLIC_KEY_PATTERN)
    priority_cap: int | None = Field(default=None, ge=0, le=9)


class RotateKey(LinkModel):
    """Replace a key by ``public_key`` (same name, role and cap); the old one is revoked (operators only)."""

    action: Literal["rotate_key"] = "rotate_key"
    fingerprint: str = Field(pattern=FINGERPRINT_PATTERN)
    public_key: str = Field(pattern=PUBLIC_KEY_PATTERN)


class RevokeKey(LinkModel):
    """Stop trusting a key, for good (operators only; the last operator key cannot be revoked)."""

    action: Literal["revoke_key"] = "revoke_key"
    fingerprint: str = Field(pattern=FINGERPRINT_PATTERN)


class ListKeys(LinkModel):
    """The key ring: fingerprint, name, role, state of every key (no key material)."""

    action: Literal["list_keys"] = "list_keys"


class FaultTarget(StrEnum):
    """Where :class:`InjectFault` flips bits: a model's weights held by flightd (until the scrubber repairs
    them), the input copy or the outputs of the next run of a model (one run, transient), a job's stored
    request or result in the journal (on disk)."""

    WEIGHTS = "weights"
    RUN_INPUT = "run_input"
    RUN_OUTPUT = "run_output"
    STORED_REQUEST = "stored_request"
    STORED_RESULT = "stored_result"


class InjectFault(LinkModel):
    """TEST-ONLY fault injection (docs/radiation.md): ``count`` upsets of ``bits`` bits each (within one
    64-bit word when ``adjacent``) at random places of ``target``. ``model``: whose weights or runs
    (None: any model flightd holds); ``replica``: which weight replica (None: random); ``job_id``: the
    stored job for ``stored_*``; ``seed``: reproducible positions. flightd refuses it unless started with
    ``radiation.test_fault_injection = true``; the reply says what was flipped."""

    action: Literal["inject_fault"] = "inject_fault"
    target: FaultTarget
    model: Identifier | None = None
    replica: int | None = Field(default=None, ge=0, le=15)
    job_id: TopicId | None = None
    count: int = Field(default=1, ge=1, le=1000)
    bits: int = Field(default=1, ge=1, le=64)
    adjacent: bool = False
    seed: int | None = Field(default=None, ge=0)


CommandAction = Annotated[
    CancelJob | AckResult | GetJob | ListJobs | Ping | ListModels | ActivateModel | RollbackModel | AddKey
    | RotateKey | RevokeKey | ListKeys | InjectFault,
    Field(discriminator="action"),
]


class Command(WireModel):
    """Ground -> satellite on ``cmd``. The reply goes to ``cmd/<command_id>/reply``.

    Sent in a signed envelope (:mod:`link.envelope`) where the satellite holds signing keys: the
    signer's role must allow ``body`` and ``issued_utc`` must lie within the configured window of
    the satellite's clock (docs/icd.md, "Request authentication"). ``auth``: the legacy HMAC tag
    (:mod:`link.auth`), required of unsigned commands where the satellite holds command keys.
    """

    command_id: TopicId
    issued_utc: UtcTime
    body: CommandAction
    auth: Auth | None = None


class CommandReply(WireModel):
    """Satellite -> ground on ``cmd/<command_id>/reply``."""

    command_id: TopicId
    ok: bool
    error: str | None = None
    data: Any = None


# --------------------------------------------------------------------------------------- events


class EventKind(StrEnum):
    ERROR = "error"
    REJECTED = "rejected"
    MODE = "mode"
    MODEL = "model"
    LIFECYCLE = "lifecycle"
    LIMIT = "limit"
    SEQUENCE = "sequence"
    BOARD = "board"
    SOFT_ERROR = "soft_error"


Severity = Literal["debug", "info", "warning", "error", "critical"]


class Event(WireModel):
    """Satellite -> ground on ``events``: something an operator should see (errors, rejected input,
    mode changes, model activation, start/stop, soft errors found and what was done about them)."""

    kind: EventKind
    severity: Severity = "info"
    message: str
    at_utc: UtcTime
    t_s: MissionTime | None = None
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
