"""flightd configuration: defaults < TOML file (``--config``) < ``ORBITD_*`` environment < command line.

Nested tables use ``__`` in the environment, e.g. ``ORBITD_EXECUTOR__INTRA_OP_THREADS=2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from flight.antireplay import DEFAULT_WINDOW, MAX_WINDOW
from flight.keyring import KINDS, KeyEntry
from flight.radiation.redundancy import strongest
from link.messages import ID_PATTERN, TOPIC_ID_PATTERN, Redundancy, Role
from link.transport import BrokerList, TlsFiles


class ExecutorSettings(BaseModel):
    """Inference executor. ``max_concurrency`` sizes the thread pool; the governor may run fewer.

    ``inference_cpus``: CPUs the inference threads are pinned to (``os.sched_setaffinity``; empty: not
    pinned), so that the event loop, the broker and the link keep the other cores, as a Jetson's CPU
    feeds its GPU. With ``intra_op_threads = 1`` ONNX Runtime computes on the pinned thread itself.
    """

    max_concurrency: int = Field(default=1, ge=1, le=64)
    intra_op_threads: int = Field(default=2, ge=1, le=256)
    providers: list[str] = Field(
        default_factory=lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    preload: list[str] = Field(default_factory=list, description="models (name or name/version) loaded at start")
    inference_cpus: list[int] = Field(default_factory=list, description="CPUs the inference threads run on")


class LinkSettings(BaseModel):
    """MQTT behaviour. Backoff doubles from ``reconnect_min_s`` up to ``reconnect_max_s``, and starts
    again from ``reconnect_min_s`` only after a connection that lasted ``stable_s``.

    ``max_payload_bytes``: the largest job submission accepted; ``broker_max_packet_bytes``: the
    broker's ``max_packet_size`` when the operator sets it here (None: not known). Both are
    advertised in the retained status, where the ground checks its payloads against them.

    ``tls_ca``, ``tls_cert``, ``tls_key``: flightd's identity on an ``mqtts://`` broker (the
    ``<sat>/`` files of ``ground pki init``; docs/security.md). Required with ``mqtts://``, refused
    without it.
    """

    keepalive_s: int = Field(default=10, ge=2)
    reconnect_min_s: float = Field(default=0.1, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    heartbeat_s: float = Field(default=2.0, gt=0)
    stable_s: float = Field(default=10.0, ge=0)
    max_payload_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    broker_max_packet_bytes: int | None = Field(default=None, ge=1024)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def tls(self) -> TlsFiles | None:
        """The TLS files, or None when ``tls_ca`` is not set."""
        return None if self.tls_ca is None else TlsFiles(self.tls_ca, self.tls_cert, self.tls_key)


class SigningKeySettings(BaseModel):
    """One public key of the satellite's first key ring, as ``ground keys new`` prints it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ID_PATTERN)
    role: Role
    public_key: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="raw Ed25519 public key, 64 hex digits")
    priority_cap: int | None = Field(default=None, ge=0, le=9, description="users: default 5")

    def entry(self, added_utc: float = 0.0) -> KeyEntry:
        return KeyEntry.parse(self.name, self.role.value, self.public_key, self.priority_cap, added_utc)


class SecuritySettings(BaseModel):
    """Request authentication (docs/security.md).

    ``keys``: the satellite's first key ring (Ed25519 public keys with roles, ``[[security.keys]]``).
    They are copied into the journal at start unless known there (a key revoked onboard stays
    revoked); keys added, rotated or revoked by command live in the journal. ``replay_window``: how
    far behind a key's highest sequence number a request may arrive (flight.antireplay).
    ``accept_unsigned``: request kinds (job, command, upload) taken without a signature; default: all
    of them when no key is configured (a lab set-up, logged at start), none otherwise.
    ``command_keys``: the legacy shared HMAC keys (link.auth) for commands and upload begins.
    """

    command_keys: dict[str, str] = Field(default_factory=dict, description="key_id -> 64 hex digits")
    command_window_s: float = Field(default=600.0, gt=0)
    keys: list[SigningKeySettings] = Field(default_factory=list)
    replay_window: int = Field(default=DEFAULT_WINDOW, ge=1, le=MAX_WINDOW)
    accept_unsigned: list[str] | None = None

    @field_validator("accept_unsigned")
    @classmethod
    def _known_kinds(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown request kinds {unknown}: use {', '.join(KINDS)}")
        return value

    def unsigned_kinds(self) -> frozenset[str]:
        """The kinds accepted unsigned, defaults applied."""
        if self.accept_unsigned is not None:
            return frozenset(self.accept_unsigned)
        return frozenset() if self.keys else frozenset(KINDS)


class JournalSettings(BaseModel):
    """Job journal. ``synchronous = "FULL"`` makes each commit survive a power loss, not only a crash.

    Storage faults (docs/icd.md, "Storage faults"): ``check_at_start`` is the check of an existing
    journal at start (``quick``: SQLite's quick_check; ``full``: integrity_check; ``off``); a journal
    that fails it is moved aside. While the journal cannot be written, intake is paused and a durable
    write of ``probe_bytes`` is tried every ``probe_period_s`` (s); the first that commits resumes it."""

    synchronous: str = "FULL"
    retention_s: float = Field(default=24 * 3600.0, gt=0, description="terminal jobs and unacked results kept")
    check_at_start: Literal["quick", "full", "off"] = "quick"
    probe_period_s: float = Field(default=5.0, gt=0)
    probe_bytes: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)

    @field_validator("synchronous")
    @classmethod
    def _sync_mode(cls, value: str) -> str:
        if value.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous is one of OFF, NORMAL, FULL, EXTRA")
        return value.upper()


class SupervisionSettings(BaseModel):
    """Health table (flight/health.py): each task must check in within its period (s) for flightd to
    send systemd ``WATCHDOG=1``. The link checks in on every acknowledged publish (the status
    heartbeat at least) and every reconnect attempt, so its period must exceed
    ``link.reconnect_max_s`` plus the 10 s connect timeout. See docs/boards.md."""

    link_period_s: float = Field(default=30.0, gt=0)
    dispatcher_period_s: float = Field(default=2.0, gt=0)
    control_periods: float = Field(
        default=3.0, ge=1.5, description="control cycle: this many control periods (at least 1 s)"
    )
    journal_period_s: float = Field(default=10.0, gt=0)
    test_hang_dispatcher_file: Path | None = Field(
        default=None,
        description="TEST-ONLY fault hook: when set and this file exists, the dispatcher stops for good "
        "(to show that a hung task stops the watchdog); never set it in flight",
    )


class BoardSettings(BaseModel):
    """The board flightd runs on (flight/board, docs/boards.md): detected at start (log and status),
    sampled on the ``board`` telemetry channel every ``period_s`` (wall-clock s).

    ``root``: where the probes read ``/sys``, ``/proc`` and ``/etc``: ``/`` on the board; a directory
    laid out as on a board for tests and the emulated Raspberry Pi (scripts/pi-emulated.sh).
    Where the board measures its power, it is also read when a job starts and finishes and every
    ``energy_period_s`` while one runs, for the job's energy above ``idle_w`` (W; None: learnt from
    readings while nothing runs; flight.governor.energy)."""

    enabled: bool = True
    root: Path = Path("/")
    period_s: float = Field(default=1.0, gt=0)
    energy_period_s: float = Field(default=0.1, gt=0)
    idle_w: float | None = Field(default=None, ge=0)


class MetricsSettings(BaseModel):
    """Prometheus ``/metrics`` endpoint (:mod:`flight.metrics`); off unless ``enabled``. The default
    address is loopback only: expose it deliberately (``host = "0.0.0.0"``)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9470, ge=0, le=65535, description="TCP port; 0 picks a free one (logged)")


class ModelRadiation(BaseModel):
    """Soft-error protection of one model (docs/radiation.md).

    ``owned_weights``: flightd holds the weights in memory of its own, CRC-checked per block and
    scrubbed every ``radiation.scrub_period_s``; ONNX Runtime then runs without pre-packing at graph
    optimisation EXTENDED at most, which costs x1.2-1.5 CPU time per inference for the bundled FP32
    models and x3.2 for tile-int8 (bench.radiation), so it is a choice per model. ``replicas``: copies of
    owned weights (a DMR run's second inference reads the second copy); a model not owned gets an
    independent ONNX Runtime session per redundant run instead. ``redundancy``: the model's default mode
    (a job's own ``redundancy`` overrides it)."""

    model_config = ConfigDict(extra="forbid")

    owned_weights: bool = False
    replicas: int = Field(default=2, ge=1, le=3)
    redundancy: Redundancy = Redundancy.NONE


class RadiationSettings(BaseModel):
    """Soft errors (docs/radiation.md). ``models``: protection per model name; ``default``: for models
    not listed. ``priority_redundancy``: a job of at least this priority runs at least this mode
    (e.g. ``{"9": "dmr"}``). ``suspect_results``: what happens to the jobs that ran on weights the
    scrubber later finds corrupt (since the block last verified clean): ``rerun`` computes them again on
    the repaired weights and replaces a result that changed; ``flag`` reports them in an event.

    ``test_fault_injection``: TEST-ONLY. Accept the ``inject_fault`` command, which flips bits in the
    weights, runs and stored jobs; flightd logs a warning at start when it is on. Never set it in flight.
    """

    model_config = ConfigDict(extra="forbid")

    scrub_period_s: float = Field(default=10.0, gt=0, description="a flip in owned weights is found within this "
                                  "(the sweep runs one control period faster)")
    models: dict[str, ModelRadiation] = Field(default_factory=dict)
    default: ModelRadiation = Field(default_factory=ModelRadiation)
    priority_redundancy: dict[int, Redundancy] = Field(default_factory=dict)
    suspect_results: Literal["rerun", "flag"] = "rerun"
    test_fault_injection: bool = False

    def model(self, name: str) -> ModelRadiation:
        """The protection of model ``name``."""
        return self.models.get(name, self.default)

    def default_redundancy(self, model: str, priority: int) -> Redundancy:
        """The mode of a job that names none: the stronger of the model's default and the priority's."""
        by_priority = [mode for floor, mode in self.priority_redundancy.items() if priority >= floor]
        return strongest(self.model(model).redundancy, *by_priority)


class FlightSettings(BaseSettings):
    """Everything flightd needs to run."""

    model_config = SettingsConfigDict(env_prefix="ORBITD_", env_nested_delimiter="__", extra="forbid")

    broker: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="mqtt://host:port, or a cluster's nodes as mqtt://a:1883,mqtt://b:1883 (tried in turn)",
    )
    sat: str = Field(default="sat1", pattern=TOPIC_ID_PATTERN)
    data_dir: Path = Path("var/flightd")
    models_dir: Path = Path("models")
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    control_period_s: float = Field(default=1.0, gt=0)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    link: LinkSettings = Field(default_factory=LinkSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    supervision: SupervisionSettings = Field(default_factory=SupervisionSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    board: BoardSettings = Field(default_factory=BoardSettings)
    radiation: RadiationSettings = Field(default_factory=RadiationSettings)
    governor: dict[str, Any] | None = Field(
        default=None, description="governor configuration (flight.governor); absent: no throttling"
    )

    _toml_file: ClassVar[Path | None] = None

    @field_validator("broker")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        BrokerList.parse(value)  # ValueError names the bad entry
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> FlightSettings:
        """Settings from ``config_file`` (TOML), the environment and ``overrides`` (None values ignored)."""
        if config_file is not None and not Path(config_file).is_file():
            raise FileNotFoundError(f"config file {config_file} does not exist")
        given = {k: v for k, v in overrides.items() if v is not None}
        previous = cls._toml_file
        cls._toml_file = Path(config_file) if config_file is not None else None
        try:
            return cls(**given)
        finally:
            cls._toml_file = previous
