"""``hil sil``: the software-in-the-loop run — broker, plant, flightd (a real process running the
governor), a ground workload and a recorder, closed through MQTT; it ends with a report and a plot.

Timing: the plant runs ``warp`` simulated seconds per wall second; flightd runs real inference in
real time and reports its time-averaged busy cores, which the plant turns into watts. The report is
computed from the recorded archive (what the ground saw), in simulated time.

flightd's ``board`` channel carries what this machine's own sensors read (flight/board: on a
development box usually busy cores alone, on a Pi or a Jetson its temperature, power and flags),
sampled as often as the plant publishes (in wall time); the report summarises it beside the plant's
numbers and the plot draws it. The plant's board is the simulated one: the governor does not take the
host's temperature for it (``board_inputs.temperature_as_board_c`` stays off).

Radiation (``radiation=True``, ``hil sil --radiation``; docs/radiation.md): flightd holds the workload
model's weights (two replicas, scrubbed every ``scrub_period_s`` wall seconds), re-runs the jobs a
corrupt block makes suspect, and accepts the TEST-ONLY ``inject_fault`` command, through which
:class:`hil.upsets.UpsetInjector` flips bits at the plant's upset rate (times ``upset_scale``). The
governor raises jobs to DMR where the flux proxy exceeds 1 (its default policy, on in every run). The
report's ``radiation`` section counts upsets injected, detected, corrected and escaped.

``link`` ("passes" or "relay"): the topology as flown (docs/hil.md): flightd, an onboard Mosquitto and
the plant on the board side (its own network namespace when this host allows it), the ground
Mosquitto, the workload and the recorder here, the onboard broker bridged to the ground broker
through the link emulator under the scenario's contact plan. Without it (the default) everything
shares one broker: the perfect link of the zero-setup main job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flight.governor import GovernorConfig
from ground.client import GroundClient, GroundError
from ground.tlm.archive import Archive
from ground.tlm.recorder import record
from hil.embedded_broker import EmbeddedBroker
from hil.governor_sim import governor_config_for
from hil.link.board import BoardSide, LoopbackBoard, SshBoard
from hil.link.config import MODES as LINK_MODES
from hil.link.contact import ContactPlan
from hil.link.model import LinkParams
from hil.link.netns import NetnsBoard, NetnsError
from hil.link.relay import LinkStats
from hil.link.report import link_report
from hil.link.rig import LinkRig
from hil.link.workload import PassWorkload
from hil.plant_service import Pacer, WarpSchedule, hold_time
from hil.plant_service import serve as serve_plant
from hil.scenario import Scenario, load_scenario
from hil.scoring import ViolationTally, sample_durations
from hil.upsets import RUN_MBIT, RUN_SCALE, SCALE, UpsetInjector, UpsetModel
from link.codec import WireError, decode
from link.messages import Event, EventKind, Mode, Ping, Status, Telemetry
from link.telemetry import (
    BOARD,
    BOARD_C,
    BUSY_CORES,
    COMPUTE,
    COMPUTE_W,
    MODE_CODE,
    MODE_CODES,
    POWER,
    POWER_W,
    RADIATION,
    RADIATOR_C,
    SOC,
    SOFT_ERRORS,
    TEMP_C,
    THERMAL,
    mode_from_code,
)

log = logging.getLogger("hil.sil")

REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


@dataclass
class SilReport:
    """Outcome of a run (simulated seconds, W h, °C; SoC as a fraction). ``violation_s``: seconds with
    any limit broken; ``violations_s``: seconds per limit, under the governor's limit names
    (``soc_floor``, ``battery_v_floor``, ``board_ceiling``, ``radiator_ceiling``) and ``brownout``;
    both scored by :mod:`hil.scoring`, as bench.governor's ``violation_s`` / ``violation_by_limit``.
    ``mode_s``, ``mode_changes`` cover the simulated span (to the last ``power`` sample plus one period;
    after it the simulator has stopped); ``safe_after_startup_s``: SAFE seconds after flightd first
    left SAFE; ``pace_slips``: times the plant fell behind the wall clock and slowed down instead of
    rushing simulated time (a busy host; docs/sil.md). ``radiation``: the environment seen and the soft
    errors counted (:func:`radiation_summary`); None when flightd published no ``soft_errors``.

    The host board, from flightd's ``board`` channel and status: ``board`` (what flightd found),
    ``board_samples``, ``board_busy_cores`` (mean, /proc/stat), ``board_max_temp_c`` and
    ``board_mean_power_w`` (NaN where the host has no such sensor)."""

    scenario: str
    orbits: float
    sim_s: float
    wall_s: float
    warp: float
    jobs_submitted: int
    jobs_done: int
    compute_energy_wh: float
    min_soc: float
    max_temp_c: float
    max_board_c: float
    max_radiator_c: float
    mode_s: dict[str, float]
    violation_s: float
    violations_s: dict[str, float]
    mode_changes: list[dict[str, Any]] = field(default_factory=list)
    safe_after_startup_s: float = 0.0
    pace_slips: int = 0
    board: str = ""
    board_samples: int = 0
    board_busy_cores: float = float("nan")
    board_max_temp_c: float = float("nan")
    board_mean_power_w: float = float("nan")
    radiation: dict[str, Any] | None = None
    archive: str = ""
    plot: str = ""
    link: dict[str, Any] | None = None
    """``hil sil --link``: passes, bytes, latencies, bridge backlog, telemetry gaps (hil.link.report);
    the figures above then come from the onboard recording (``onboard_archive``), the plot from the
    ground's (``archive``, with gaps)."""
    onboard_archive: str = ""


def series(archive: Archive, channel: str, sat: str | None = None) -> list[Telemetry]:
    out = []
    for rec in archive.messages(channels=[f"tlm/{channel}"], sats=None if sat is None else [sat]):
        try:
            out.append(decode(rec.payload, Telemetry).message)
        except WireError:
            continue
    out.sort(key=lambda m: m.t_s)
    return out


def report_from_archive(archive: Archive, scenario: Scenario, jobs_submitted: int, jobs_done: int,
                        wall_s: float, warp: float, orbits: float, sat: str | None = None) -> SilReport:
    """The report of a run from what the ground recorded (``sat``: one satellite of a fleet's archive)."""
    tally = ViolationTally(scenario.limits)
    timed = {ch: sample_durations(series(archive, ch, sat))
             for ch in dict.fromkeys((POWER, THERMAL, *tally.channels))}
    power, thermal = timed[POWER], timed[THERMAL]
    end_s = power[-1][0].t_s + power[-1][1] if power else float("inf")
    compute = sample_durations([s for s in series(archive, COMPUTE, sat) if s.t_s <= end_s])
    for channel in tally.channels:
        for s, dt in timed[channel]:
            tally.observe(s.t_s, dt, {channel: s.values})
    soc = [s.values[SOC] for s, _ in power if SOC in s.values]
    board = [s.values[BOARD_C] for s, _ in thermal if BOARD_C in s.values]
    radiator = [s.values[RADIATOR_C] for s, _ in thermal if RADIATOR_C in s.values]
    mode_s = {mode.value: 0.0 for mode in MODE_CODES}
    safe_after_startup_s, started = 0.0, False
    for s, dt in compute:
        mode = mode_from_code(s.values.get(MODE_CODE, 0)) or Mode.NOMINAL
        mode_s[mode.value] += dt
        started = started or mode is not Mode.SAFE
        if started and mode is Mode.SAFE:
            safe_after_startup_s += dt
    changes = []
    for rec in archive.messages(channels=["events"], sats=None if sat is None else [sat]):
        try:
            event = decode(rec.payload, Event).message
        except WireError:
            continue
        t_event = event.details.get("t_s")
        if event.kind is EventKind.MODE and not (isinstance(t_event, int | float) and t_event > end_s):
            changes.append({"t_s": event.details.get("t_s"), "mode": event.details.get("mode"),
                            "reasons": event.details.get("reasons", [])})
    sim_s = (power[-1][0].t_s - power[0][0].t_s) if len(power) > 1 else 0.0
    host = series(archive, BOARD)

    def mean(key: str) -> float:
        values = [s.values[key] for s in host if key in s.values]
        return float(np.mean(values)) if values else float("nan")

    return SilReport(
        scenario=scenario.name,
        orbits=orbits,
        sim_s=sim_s,
        wall_s=wall_s,
        warp=warp,
        jobs_submitted=jobs_submitted,
        jobs_done=jobs_done,
        compute_energy_wh=sum(s.values.get(COMPUTE_W, 0.0) * dt for s, dt in power) / 3600.0,
        min_soc=min(soc, default=float("nan")),
        max_temp_c=max(board + radiator, default=float("nan")),
        max_board_c=max(board, default=float("nan")),
        max_radiator_c=max(radiator, default=float("nan")),
        mode_s=mode_s,
        violation_s=tally.violation_s,
        violations_s=tally.seconds(),
        mode_changes=changes,
        safe_after_startup_s=safe_after_startup_s,
        board=_board_summary(archive),
        board_samples=len(host),
        board_busy_cores=mean(BUSY_CORES),
        board_max_temp_c=max((s.values[TEMP_C] for s in host if TEMP_C in s.values), default=float("nan")),
        board_mean_power_w=mean(POWER_W),
        radiation=radiation_summary(archive, end_s),
    )


def radiation_summary(archive: Archive, end_s: float) -> dict[str, Any] | None:
    """The radiation environment the plant published (mean flux, share of the time above 1) and flightd's
    last ``soft_errors`` counters, with what they add up to (docs/radiation.md):

    - weights: ``bits_injected`` (flightd's count), ``bits_corrected`` (restored by the scrubber),
      ``bits_escaped`` (injected, not restored by the end: still in memory after the final scrub);
    - runs: ``injected`` (applied to a run), ``changed`` (its outputs), ``detected`` (by redundant runs),
      ``escaped`` (a changed answer returned unchecked);
    - jobs: ``checked`` (dmr/tmr), ``suspect`` (ran on weights found corrupt later), ``rerun_corrected``,
      ``flagged`` (suspect but their input no longer onboard), ``unresolved``;
    - ``redundant_energy_share``: core-seconds of redundant runs over those of first runs (DMR everywhere: 1).
    None without ``soft_errors`` telemetry."""
    errors = series(archive, SOFT_ERRORS)  # the last ones come after the plant stopped: the final sweeps
    if not errors:
        return None
    last = errors[-1].values
    radiation = sample_durations([s for s in series(archive, RADIATION) if s.t_s <= end_s])
    total = sum(dt for _, dt in radiation)
    flux_mean = sum(s.values.get("flux", 0.0) * dt for s, dt in radiation) / total if total else float("nan")
    high = sum(dt for s, dt in radiation if s.values.get("flux", 0.0) > 1.0) / total if total else float("nan")
    flagged = 0
    for rec in archive.messages(channels=["events"]):
        with contextlib.suppress(WireError):
            event = decode(rec.payload, Event).message
            count = event.details.get("flagged") if event.kind is EventKind.SOFT_ERROR else 0
            flagged += count if isinstance(count, int) else 0
    injected, repaired = int(last.get("injected_weight_bits", 0)), int(last.get("bits_repaired", 0))
    first = last.get("first_run_core_s", 0.0)
    return {
        "flux_mean": flux_mean,
        "high_flux_share": high,
        "weights": {"bits_injected": injected, "blocks_corrupt": int(last.get("blocks_corrupt", 0)),
                    "bits_corrected": repaired, "bits_escaped": max(0, injected - repaired),
                    "repairs_failed": int(last.get("repairs_failed", 0))},
        "runs": {"injected": int(last.get("injected_run_faults", 0)),
                 "changed": int(last.get("run_faults_changed", 0)),
                 "detected": int(last.get("run_faults_detected", 0)),
                 "escaped": int(last.get("run_faults_escaped", 0))},
        "jobs": {"checked": int(last.get("checked_jobs", 0)), "mismatches": int(last.get("mismatches", 0)),
                 "unresolved": int(last.get("unresolved", 0)), "suspect": int(last.get("suspect_jobs", 0)),
                 "rerun_corrected": int(last.get("reruns_changed", 0)), "flagged": flagged,
                 "stored_corrupt": int(last.get("stored_corrupt", 0))},
        "redundant_energy_share": last.get("redundant_core_s", 0.0) / first if first > 0 else 0.0,
        "scrub_cpu_s": last.get("scrub_cpu_s", 0.0),
        "weight_bytes": int(last.get("weight_bytes", 0)),
    }


CONTROL_PERIOD_S = 0.05
"""flightd's control period in a SIL run, wall s."""


def sil_telemetry_period_s(scenario: Scenario, warp: float) -> float:
    """The plant's telemetry period in a SIL run, simulated s: the scenario's, but at least 0.2 s of
    wall time (at high warp a 1 s simulated period would be hundreds of messages per wall second through
    one Python process; docs/sil.md). Staleness is judged in the plant's time (its time tone), so the
    period no longer has to absorb delivery jitter."""
    return max(scenario.telemetry_period_s, 0.2 * warp)


def flightd_env(gov_config: GovernorConfig, preload: list[str], control_period_s: float = CONTROL_PERIOD_S,
                heartbeat_s: float = 1.0) -> dict[str, str]:
    """The ``ORBITD_*`` settings of a flightd under the plant simulator: the governor configured from
    the scenario's design, a fast control cycle (wall s) and heartbeat (s), the models in ``preload``."""
    return {
        "ORBITD_GOVERNOR": gov_config.model_dump_json(),
        "ORBITD_CONTROL_PERIOD_S": str(control_period_s),
        "ORBITD_LINK__HEARTBEAT_S": str(heartbeat_s),
        "ORBITD_EXECUTOR__PRELOAD": json.dumps(preload),
    }


def sil_flightd_env(scenario: Scenario, warp: float, preload: list[str]) -> dict[str, str]:
    """:func:`flightd_env` of a SIL run: the governor configured from the scenario's design data at the
    SIL telemetry period, the SIL control period, a 1 s heartbeat, the board channel at the plant's period."""
    period_s = sil_telemetry_period_s(scenario, warp)
    gov_config = governor_config_for(scenario.build_plant(), scenario.limits, period_s)
    # the host board's own probes as often as the plant publishes (wall s)
    return {**flightd_env(gov_config, preload), "ORBITD_BOARD__PERIOD_S": str(period_s / warp)}


def _board_summary(archive: Archive) -> str:
    """What flightd said of its board in the last status that says it ("" if none did)."""
    summary = ""
    for rec in archive.messages(channels=["status"]):
        try:
            status = decode(rec.payload, Status).message
        except WireError:
            continue
        if status.board is not None:
            summary = status.board.summary
    return summary


def kill_if_running(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()


class Workload:
    """Keeps ``backlog`` tile-triage jobs outstanding and counts the results; ``run_job`` submits one
    job's inputs and returns once its result is in (a satellite's GroundClient, or a fleet dispatcher)."""

    def __init__(self, run_job: Callable[[dict[str, np.ndarray]], Awaitable[object]], input_name: str, backlog: int,
                 tiles: int = 1, seed: int = 0) -> None:
        self.run_job, self.input_name, self.backlog = run_job, input_name, backlog
        self.tile = np.random.default_rng(seed).random((tiles, 3, 128, 128), dtype=np.float32)
        self.submitted = 0
        self.done = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self) -> None:
        try:
            await self.run_job({self.input_name: self.tile})
            self.done += 1
        except GroundError as exc:
            log.debug("workload job: %s", exc)

    async def run(self) -> None:
        while True:
            while len(self._tasks) < self.backlog:
                self.submitted += 1
                task = asyncio.create_task(self._one())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def start_flightd(broker: str, sat: str, data_dir: Path, models: Path, env: dict[str, str],
                  log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """flightd as a child process (its output to ``log_path``) with ``env`` (:func:`flightd_env`) over
    this process's environment."""
    out = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "flight.cli", "--broker", broker, "--sat", sat, "--data-dir", str(data_dir),
         "--models", str(models)],
        env={**os.environ, **env}, stdout=out, stderr=out, cwd=cwd,
    )


async def wait_answering(ground: GroundClient, proc: subprocess.Popen[bytes], log_path: Path,
                         timeout_s: float = 60.0) -> None:
    """Return once flightd answers a ping; RuntimeError naming its log if it exits or stays silent."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await ground.command(Ping(), timeout_s=2.0)
            return
        except GroundError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"flightd did not start; see {log_path}") from None


async def stop_flightd(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM (a graceful stop: the offline status) and wait; killed by the caller's stack if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(proc.wait, timeout_s)


def _model_input(models: Path, model: str) -> dict[str, Any]:
    """The first input of the model's latest version, as its manifest describes it."""
    manifests = sorted((models / model).glob("*/manifest.json"))
    if not manifests:
        raise FileNotFoundError(f"model {model} not found in {models}")
    doc: dict[str, Any] = json.loads(manifests[-1].read_text())["inputs"][0]
    return doc


def tile_input_name(models: Path, model: str) -> str:
    """The name of the first input of the model's latest version."""
    return str(_model_input(models, model)["name"])


def job_inputs(models: Path, model: str, batch: int, seed: int = 0) -> tuple[str, np.ndarray[Any, Any]]:
    """(input name, a random input of ``batch`` items) for ``model``: its manifest's shape with the
    batch dimension (the first, when not a number) set to ``batch``; float inputs uniform in [0, 1)."""
    spec = _model_input(models, model)
    shape = [d if isinstance(d, int) else batch for d in spec["shape"]]
    array = np.random.default_rng(seed).random(shape).astype(np.dtype(spec["dtype"]))
    return str(spec["name"]), array


def _report_dir(report_dir: Path | None, scenario: Scenario) -> Path:
    out = Path(report_dir or Path("runs") / f"sil-{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def _models_dir(models: Path | None) -> Path:
    return Path(models or (REPO_MODELS if REPO_MODELS.is_dir() else Path("models"))).resolve()


@dataclass(frozen=True)
class LinkOptions:
    """``hil sil --link``: ``mode`` "passes" (the scenario's stations) or "relay"; the plant runs at
    ``contact_warp`` in contact (and a telemetry period before each acquisition) and at the run's warp
    in the gaps; ``board`` "netns" (its own network namespace: needs root and iproute2), "loopback" or
    "auto" (netns when possible). ``plan``: a contact plan instead of the scenario's; ``schedule``:
    mission times of open-loop submissions (empty: the backlog is kept outstanding);
    ``resend_contact_s``: contact seconds without an acknowledgement before a job is sent again;
    ``during``: a coroutine run alongside the run with the rig (a test's kill -9); ``params``: the
    link's rates and loss instead of the scenario's. ``board`` may also be a board side of its own
    (:class:`hil.link.board.SshBoard`: a real board, or the emulated Pi's root, reached by ssh)."""

    mode: str = "passes"
    contact_warp: float = 10.0
    board: str | BoardSide = "auto"
    plan: ContactPlan | None = None
    schedule: tuple[float, ...] = ()
    resend_contact_s: float = 300.0
    bridge_restart_s: int = 1
    during: Callable[[LinkRig], Coroutine[Any, Any, None]] | None = None
    params: LinkParams | None = None

    def __post_init__(self) -> None:
        if self.mode not in LINK_MODES:
            raise ValueError(f"unknown link mode {self.mode!r} (one of {', '.join(LINK_MODES)})")
        if isinstance(self.board, str) and self.board not in BOARDS:
            raise ValueError(f"unknown board side {self.board!r} (one of {', '.join(BOARDS)})")
        if self.contact_warp <= 0 or self.resend_contact_s <= 0:
            raise ValueError("contact_warp and resend_contact_s must be > 0")


BOARDS = ("auto", "netns", "loopback")


def netns_possible() -> bool:
    """Root and iproute2: what a board side in its own network namespace needs."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _board_side(choice: str | BoardSide, stack: contextlib.ExitStack) -> tuple[BoardSide, str]:
    """The board side and its kind for the report (netns, loopback, ssh)."""
    if not isinstance(choice, str):
        return choice, "ssh" if isinstance(choice, SshBoard) else type(choice).__name__
    if choice == "netns" or (choice == "auto" and netns_possible()):
        try:
            return stack.enter_context(NetnsBoard(f"s{os.getpid() % 10**6}")), "netns"
        except NetnsError:
            if choice == "netns":
                raise
            log.warning("no network namespace for the board side; it shares this host's loopback")
    return LoopbackBoard(), "loopback"


async def run_sil(
    scenario_name: str,
    orbits: float = 2.0,
    warp: float = 200.0,
    broker: str | None = None,
    report_dir: Path | None = None,
    sat: str = "sat1",
    models: Path | None = None,
    model: str = "tile-fp32",
    backlog: int = 8,
    tiles: int = 4,
    progress: bool = True,
    radiation: bool = False,
    upset_scale: float = SCALE,
    run_upset_scale: float = RUN_SCALE,
    run_mbit: float = RUN_MBIT,
    scrub_period_s: float = 2.0,
    link: LinkOptions | None = None,
) -> SilReport:
    """One SIL run (see the module docstring); ``link``: across the space link instead of the perfect
    one (``broker`` is then not used: the rig starts its own two brokers)."""
    scenario = load_scenario(scenario_name)
    plant = scenario.build_plant()
    sim_s = orbits * plant.linear_parameters().period_s
    scenario.config.orbit.check_span(sim_s)  # a TLE orbit that decays within the run: refused now, with the hour
    report_dir = _report_dir(report_dir, scenario)
    models = _models_dir(models)
    if link is not None:
        if radiation:
            raise ValueError("--radiation runs on the perfect link only (not with --link): the upset injector "
                             "talks to flightd through the ground broker in real time")
        return await _run_across_link(scenario, orbits, sim_s, warp, report_dir, sat, models, model, backlog, tiles,
                                      progress, link)
    tlm_period_s = sil_telemetry_period_s(scenario, warp)

    async with contextlib.AsyncExitStack() as stack:
        if broker is None:
            embedded = await stack.enter_async_context(EmbeddedBroker())
            broker = embedded.url
        archive_path = report_dir / "telemetry.sqlite3"
        stop_recording = asyncio.Event()
        ready = asyncio.Event()
        recorder = asyncio.create_task(
            record(archive_path, broker, sat=sat, stop=stop_recording, on_ready=lambda _: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 30)
        flightd_env = sil_flightd_env(scenario, warp, [model])
        if radiation:  # TEST-ONLY fault injection: flightd logs a warning that it is on
            flightd_env["ORBITD_RADIATION"] = json.dumps({
                "scrub_period_s": scrub_period_s, "suspect_results": "rerun", "test_fault_injection": True,
                "models": {model: {"owned_weights": True, "replicas": 2}}})
        flightd_log = report_dir / "flightd.log"
        flightd = start_flightd(broker, sat, report_dir / "flightd", models, flightd_env, flightd_log, report_dir)
        stack.callback(kill_if_running, flightd)
        ground = await stack.enter_async_context(GroundClient(broker, sat, timeout_s=2.0))
        await wait_answering(ground, flightd, flightd_log)
        await ground.track_all_jobs()

        async def run_job(inputs: dict[str, np.ndarray]) -> None:
            job = await ground.submit(model, inputs)
            await ground.wait_result(job.job_id, timeout_s=3600)

        workload = Workload(run_job, tile_input_name(models, model), backlog, tiles)
        workload_task: asyncio.Task[None] | None = None
        pace_slips = 0
        upsets = (UpsetInjector(ground, UpsetModel(upset_scale, run_upset_scale, run_mbit), plant.board.cores)
                  if radiation else None)
        upsets_task = asyncio.create_task(upsets.run()) if upsets is not None else None

        wall0 = time.monotonic()
        plant_run = serve_plant(broker, sat, scenario, warp=warp, duration_s=sim_s, rate_hz=1.0 / tlm_period_s,
                                lockstep_s=tlm_period_s)
        plant_task = asyncio.create_task(plant_run)
        workload_task = asyncio.create_task(workload.run())
        end_t_s: float | None = None
        try:
            await _watch_progress(plant_task, ground, sim_s, workload, progress)
            pacer = await plant_task
            pace_slips, end_t_s = pacer.slips, pacer.end_t_s
        finally:
            wall_s = time.monotonic() - wall0
            await workload.stop()
            for task in (workload_task, upsets_task):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            if upsets is not None:  # the last flips are found by the next sweeps; their counts go out after
                # simulated time stands at the run's end meanwhile (without tones flightd's clock would
                # flywheel on and find its telemetry stale: a SAFE after the run)
                holding = (asyncio.create_task(hold_time(ground.mqtt, sat, end_t_s, warp))
                           if end_t_s is not None else None)
                await asyncio.sleep(2 * scrub_period_s + 1.5)
                if holding is not None:
                    holding.cancel()
                    await asyncio.gather(holding, return_exceptions=True)
            await stop_flightd(flightd)
            await asyncio.sleep(0.5)
            stop_recording.set()
            await asyncio.gather(recorder, return_exceptions=True)

    archive = Archive(archive_path)
    report = report_from_archive(archive, scenario, workload.submitted, workload.done, wall_s, warp, orbits)
    report.pace_slips = pace_slips
    if upsets is not None and report.radiation is not None:
        report.radiation["injection"] = {
            "upset_scale": upset_scale, "run_upset_scale": run_upset_scale, "run_mbit": run_mbit,
            "scrub_period_s": scrub_period_s,
            "weight_bits_sent": upsets.weight_bits, "run_faults_armed": upsets.run_faults,
            "expected_weight_upsets": upsets.expected_weight, "expected_run_upsets": upsets.expected_run,
            "refused": upsets.refused}
    from ground.tlm.plot import plot

    title = f"hil sil: {scenario.name}, {orbits:g} orbits, governor on" + (
        f", upsets x{upset_scale:g} (runs x{run_upset_scale:g})" if radiation else "")
    png = plot(archive, report_dir / "sil.png", title=title)
    report.archive, report.plot = str(archive_path), str(png)
    (report_dir / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


async def _run_across_link(
    scenario: Scenario, orbits: float, sim_s: float, warp: float, report_dir: Path, sat: str, models: Path,
    model: str, backlog: int, tiles: int, progress: bool, opts: LinkOptions,
) -> SilReport:
    """``hil sil --link``: the rig of :mod:`hil.link.rig` around flightd, the plant and the workload."""
    link_cfg = scenario.link
    if opts.plan is None and link_cfg is None:
        raise ValueError(f"scenario {scenario.name} declares no [link] table: --link needs its stations and "
                         "rates (docs/hil.md)")
    end_s = sim_s + 1.0
    plan = opts.plan or link_cfg.plan(opts.mode, scenario.config.orbit, 0.0, end_s)  # type: ignore[union-attr]
    params = opts.params or (link_cfg.params(0.0, end_s) if link_cfg is not None else LinkParams())
    # Telemetry period as in the perfect-link run, from the fastest warp of the run (docs/sil.md).
    fastest = opts.contact_warp if plan.mode == "relay" else max(warp, opts.contact_warp)
    tlm_period_s = sil_telemetry_period_s(scenario, fastest)
    schedule = (WarpSchedule(opts.contact_warp) if plan.mode == "relay"
                else WarpSchedule.around(plan.contacts, opts.contact_warp, warp, lead_s=tlm_period_s))
    input_name, inputs = job_inputs(models, model, tiles)
    ground_archive, onboard_archive = report_dir / "telemetry.sqlite3", report_dir / "onboard.sqlite3"

    with contextlib.ExitStack() as sync_stack:
        board, board_kind = _board_side(opts.board, sync_stack)
        async with contextlib.AsyncExitStack() as stack:
            rig = await stack.enter_async_context(LinkRig(
                board, plan, report_dir, sat=sat, params=params, lead_s=tlm_period_s / 4,
                bridge_restart_s=opts.bridge_restart_s, models=models,
                flightd_env=sil_flightd_env(scenario, fastest, [model])))
            stop_recording = asyncio.Event()
            recorders = []
            for path, url in ((ground_archive, rig.ground_url), (onboard_archive, rig.onboard_url)):
                ready = asyncio.Event()
                recorders.append(asyncio.create_task(record(path, url, sat=sat, stop=stop_recording,
                                                            on_ready=_setter(ready))))
                await asyncio.wait_for(ready.wait(), 30)
            rig.start_flightd()
            await rig.wait_online()
            ground = await stack.enter_async_context(GroundClient(rig.ground_url, sat, timeout_s=10.0))
            workload = PassWorkload(ground, rig.clock, plan, model, input_name, inputs, backlog=backlog,
                                    schedule=opts.schedule, resend_contact_s=opts.resend_contact_s)
            wall0 = time.monotonic()
            rig.start_plant(scenario.path or scenario.name, sim_s, tlm_period_s, schedule, lockstep_s=tlm_period_s)
            side_tasks = [asyncio.create_task(workload.run())]
            if opts.during is not None:
                side_tasks.append(asyncio.create_task(opts.during(rig)))
            plant_done = asyncio.create_task(rig.wait_plant())
            try:
                await _watch_clock(plant_done, rig, sim_s, workload, side_tasks, progress)
                summary = await plant_done
                await asyncio.sleep(1.0)  # what is on its way settles
                wall_s = time.monotonic() - wall0
                end_t = min(rig.clock.now(), end_s)
                waiting = rig.backlog.waiting()
                stats = rig.relay.stats if rig.relay else LinkStats()
            finally:
                for task in side_tasks:
                    task.cancel()
                await asyncio.gather(*side_tasks, return_exceptions=True)
                await rig.stop_flightd()
                await asyncio.sleep(0.5)
                stop_recording.set()
                await asyncio.gather(*recorders, return_exceptions=True)

    onboard = Archive(onboard_archive)
    report = report_from_archive(onboard, scenario, workload.submitted, workload.done, wall_s, warp, orbits)
    report.pace_slips = int(summary.get("pace_slips", 0))
    ground_view = Archive(ground_archive)
    report.link = link_report(
        plan, stats, workload.ledger, waiting, end_t, board=board_kind, contact_warp=opts.contact_warp,
        gap_warp=opts.contact_warp if plan.mode == "relay" else warp,
        ground_times_s=[m.t_s for m in series(ground_view, POWER)], period_s=tlm_period_s).to_dict()
    (report_dir / "jobs.json").write_text(json.dumps(
        [asdict(j) | {"runs": sorted(j.runs)} for j in workload.ledger.jobs.values()], indent=1) + "\n")
    (report_dir / "link-events.json").write_text(json.dumps([asdict(e) for e in stats.events]) + "\n")
    from ground.tlm.plot import plot

    contacts = [(a, min(b, end_s)) for a, b in plan.contacts if a < end_s]
    png = plot(ground_view, report_dir / "sil.png", contacts=contacts, span=(0.0, sim_s),
               title=f"hil sil --link {plan.mode}: {scenario.name}, {orbits:g} orbits, what the ground saw")
    report.archive, report.onboard_archive, report.plot = str(ground_archive), str(onboard_archive), str(png)
    (report_dir / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _: event.set()


async def _watch_clock(plant_done: asyncio.Task[Any], rig: LinkRig, sim_s: float, workload: PassWorkload,
                       side_tasks: list[asyncio.Task[Any]], show: bool) -> None:
    """Progress on stderr from the link's clock; a side task that fails ends the run with its error."""
    from rich.progress import Progress

    with Progress(*progress_columns(), disable=not show, transient=False) as bar:
        task = bar.add_task("sim", total=sim_s, info="")
        while not plant_done.done():
            for side in side_tasks:
                if side.done() and not side.cancelled() and side.exception() is not None:
                    raise RuntimeError(f"the run failed: {side.exception()!r}") from side.exception()
            now = rig.clock.now()
            contact = "in contact" if rig.plan.in_contact(now) else "no contact"
            bar.update(task, completed=now, info=f"{contact:10s} jobs {workload.done} / {workload.submitted}")
            await asyncio.sleep(0.25)
        bar.update(task, completed=sim_s)


async def keep_latest(queue: asyncio.Queue[tuple[str, bytes]], latest: dict[str, Telemetry],
                      key: Callable[[Telemetry], str]) -> None:
    """Forever: each telemetry sample from ``queue`` into ``latest`` under ``key(sample)``."""
    while True:
        _, payload = await queue.get()
        with contextlib.suppress(WireError):
            m = decode(payload, Telemetry).message
            latest[key(m)] = m


def progress_columns() -> tuple[Any, ...]:
    """The rich progress bar's columns of hil sil and hil fleet."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    return (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn())


async def _watch_progress(plant_task: asyncio.Task[Pacer], ground: GroundClient, sim_s: float,
                          workload: Workload, show: bool) -> None:
    """Live progress on stderr from the satellite's own telemetry."""
    from rich.progress import Progress

    latest: dict[str, Telemetry] = {}
    drainer = asyncio.create_task(keep_latest(await ground.watch_topic(ground.topics.telemetry_all), latest,
                                              lambda m: m.channel))
    with Progress(*progress_columns(), disable=not show, transient=False) as bar:
        task = bar.add_task("sim", total=sim_s, info="")
        while not plant_task.done():
            p, th, c = latest.get(POWER), latest.get(THERMAL), latest.get(COMPUTE)
            if p is not None:
                known = mode_from_code(c.values.get(MODE_CODE, 0)) if c else None
                mode = known.value if known else "?"
                info = (f"SoC {p.values.get(SOC, 0) * 100:5.1f}%  board "
                        f"{th.values.get(BOARD_C, 0) if th else 0:5.1f} °C  mode {mode:9s} jobs {workload.done}")
                bar.update(task, completed=p.t_s, info=info)
            await asyncio.sleep(0.25)
        bar.update(task, completed=sim_s)
    drainer.cancel()


def _board_row(report: SilReport) -> str:
    if not report.board_samples:
        return "no board samples"
    parts = [f"{report.board_samples} samples", f"busy cores {report.board_busy_cores:.2f}"]
    if not np.isnan(report.board_max_temp_c):
        parts.append(f"max {report.board_max_temp_c:.1f} °C")
    if not np.isnan(report.board_mean_power_w):
        parts.append(f"mean {report.board_mean_power_w:.2f} W")
    return ", ".join(parts)


def _link_rows(link: dict[str, Any] | None) -> list[tuple[str, str]]:
    if link is None:
        return []
    lat, check = link["latency_s"], link["plan_check"]

    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f} s"

    return [
        (f"link ({link['mode']}, board side: {link['board']})", f"{len(link['passes'])} contacts"),
        ("bridge bytes up / down", f"{link['bridge_bytes_up']:,} / {link['bridge_bytes_down']:,}"),
        ("unanswered / ran twice / re-sent", f"{link['unanswered']} / {link['duplicated']} / {link['resends']}"),
        ("latency p50 / p99 / max", f"{s(lat['p50'])} / {s(lat['p99'])} / {s(lat['max'])}"),
        ("answered in their first contact",
         f"{check['in_contact_same_pass'] + check['out_of_contact_next_pass']} of "
         f"{check['in_contact'] + check['out_of_contact']}"),
        ("waiting in the bridge up / down", f"{link['bridge_waiting_up']} / {link['bridge_waiting_down']}"),
    ]


def print_report(report: SilReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hil sil — {report.scenario}, {report.orbits:g} orbits ({report.sim_s:.0f} s simulated "
                        f"in {report.wall_s:.0f} s, warp {report.warp:g})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("jobs done / submitted", f"{report.jobs_done} / {report.jobs_submitted}"),
        ("compute energy", f"{report.compute_energy_wh:.1f} Wh"),
        ("min SoC", f"{report.min_soc * 100:.1f} %"),
        ("max board / radiator", f"{report.max_board_c:.1f} / {report.max_radiator_c:.1f} °C"),
        *((f"time in {m}", f"{s:.0f} s") for m, s in report.mode_s.items()),
        *((f"violation: {k}", f"{v:.0f} s") for k, v in report.violations_s.items()),
        ("mode changes", str(len(report.mode_changes))),
        ("SAFE after start-up", f"{report.safe_after_startup_s:.0f} s"),
        ("plant slowed for the host", f"{report.pace_slips} times"),
        ("host board (own sensors)", _board_row(report)),
        *_radiation_rows(report.radiation),
        *_link_rows(report.link),
        ("plot", report.plot),
    ]
    for k, v in rows:
        table.add_row(k, v)
    Console(stderr=True).print(table)


def _radiation_rows(r: dict[str, Any] | None) -> list[tuple[str, str]]:
    if r is None:
        return []
    w, runs, jobs = r["weights"], r["runs"], r["jobs"]
    rows = [("flux proxy: mean / share > 1", f"{r['flux_mean']:.2f} / {r['high_flux_share'] * 100:.1f} %")]
    if "injection" in r:
        rows.append(("upsets accelerated: weights / runs", f"x{r['injection']['upset_scale']:g} / "
                                                           f"x{r['injection']['run_upset_scale']:g}"))
    rows += [
        ("weight bits injected / corrected / escaped", f"{w['bits_injected']} / {w['bits_corrected']} / "
                                                       f"{w['bits_escaped']}"),
        ("run faults injected / changed / detected / escaped", f"{runs['injected']} / {runs['changed']} / "
                                                              f"{runs['detected']} / {runs['escaped']}"),
        ("jobs checked (dmr/tmr) / suspect / re-run corrected / flagged",
         f"{jobs['checked']} / {jobs['suspect']} / {jobs['rerun_corrected']} / {jobs['flagged']}"),
        ("redundant runs' energy share", f"{r['redundant_energy_share'] * 100:.1f} %"),
    ]
    return rows
