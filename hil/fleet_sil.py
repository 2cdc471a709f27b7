"""``hil fleet``: a real fleet on one machine, the fleet simulator's orbitd policy made of real parts.

    broker (Mosquitto, or a three-node nats-server cluster)
      satellite k = 1..N: plant k (hil.plant_service: warped, lock-step, phased (k-1)/N of an orbit
                          around) <-> flightd k (a real process, governor on, real ONNX inference)
      ground: FleetDispatcher (ground.fleet) routes a workload by the satellites' retained status,
              re-routing a job once when its satellite goes SAFE before running it
      recorder (ground.tlm.recorder) archives every satellite --> fleet report + plot

Each satellite is the scenario's spacecraft (``nominal-550km`` by default) with its circular orbit's
``phase_deg`` moved by 360 (k-1) / N degrees, so the fleet is spread around one orbit plane: at any
moment some satellites are in the Sun with full budgets and some in eclipse on their batteries, and the
dispatcher's choice shows in where the jobs go (batteries start at :data:`INITIAL_SOC`, so that the
eclipse budgets bind). ``dropout_sat`` gives one satellite a telemetry dropout
(every channel, from 40 % to 65 % of the run): its flightd goes SAFE, jobs queued there are re-routed.

Timing is hil sil's (docs/sil.md): the plants own simulated time (time tones, lock-step, no catch-up
bursts). Physics steps of 5 s here (1 s in hil sil): six plants in one process at warp 300 would
otherwise take a third of a core.

The report (:class:`FleetSilReport`): per satellite what the dispatcher routed there and got done there,
re-routes away from it, and hil sil's figures from the archive (min SoC, time per mode, SAFE after
start-up, violations); fleet totals; ``fleet.png`` (:func:`ground.tlm.plot.plot_fleet`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ground.fleet.dispatcher import FleetDispatcher, FleetStats
from ground.tlm.archive import Archive
from ground.tlm.recorder import record
from hil.governor_sim import governor_config_for
from hil.mosquitto_broker import MosquittoBroker
from hil.nats_cluster import NatsCluster
from hil.plant.faults import Fault
from hil.plant.orbit import CircularOrbit
from hil.plant_service import Pacer
from hil.plant_service import serve as serve_plant
from hil.scenario import Scenario, load_scenario
from hil.sil import (
    REPO_MODELS,
    Workload,
    flightd_env,
    keep_latest,
    kill_if_running,
    progress_columns,
    report_from_archive,
    series,
    start_flightd,
    stop_flightd,
    tile_input_name,
    wait_answering,
)
from link.messages import Mode, Telemetry
from link.telemetry import POWER, SOC, SUNLIT
from link.topics import LIVE_ROOT

log = logging.getLogger("hil.fleet")

BROKERS = ("mosquitto", "nats-cluster")
"""``--broker`` values that start a broker for the run; anything else is a broker URL (list) to use."""
PHYSICS_DT_S = 5.0
"""Plant integration step, simulated s (hil sil: 1 s); see the module docstring."""
CONTROL_PERIOD_S = 0.1
"""flightd's control cycle under the fleet, wall s (hil sil: 0.05 s): six of them share two cores."""
HEARTBEAT_S = 0.5
"""flightd's status period, wall s: how fresh the dispatcher's view of each satellite is."""
INITIAL_SOC = 0.5
"""Every battery's state of charge at the start: with the scenario's 90 % no budget binds in the first
orbits (the eclipse reserve is far below), and every satellite looks the same to the dispatcher; at
50 % a satellite in eclipse gets about a third of the busy cores of one in the Sun."""
DROPOUT_SPAN = (0.40, 0.65)
"""Share of the run during which ``dropout_sat`` publishes no telemetry."""
STARVED_SHARE = 0.1
"""A satellite passed over (idle with budget while a job went to one with work ahead of it:
:attr:`ground.fleet.view.Route.passed_over`) for at least this share of the fleet's routed jobs, and
at least ``STARVED_MIN_JOBS`` times, is flagged *starved* in the report: with every routed-by figure
true, earliest-finish routing sends a job to an idle satellite that runs at least as fast before it
queues one behind other work, so this happening often means a figure it routes by is wrong."""
STARVED_MIN_JOBS = 3


def starved(passed_over: int, routed_total: int) -> bool:
    """Whether a satellite passed over ``passed_over`` times in a run of ``routed_total`` routed jobs
    was starved (``STARVED_SHARE``, ``STARVED_MIN_JOBS``)."""
    return passed_over >= max(STARVED_MIN_JOBS, STARVED_SHARE * routed_total)


@dataclass
class SatelliteReport:
    """One satellite of the run: orbit phase offset (deg), jobs the dispatcher routed here (and of those,
    while it was in eclipse), finished here and re-routed away, the share of its simulated time in
    eclipse, and hil sil's figures from the archive (simulated s, fractions, °C)."""

    sat: str
    phase_deg: float
    routed: int
    routed_in_eclipse: int
    done: int
    rerouted_away: int
    min_soc: float
    max_board_c: float
    mode_s: dict[str, float]
    safe_after_startup_s: float
    violation_s: float
    compute_energy_wh: float
    mode_changes: int
    eclipse_share: float = 0.0
    dropout: bool = False
    probes: int = 0
    passed_over: int = 0
    starved: bool = False


@dataclass
class FleetSilReport:
    """Outcome of ``hil fleet`` (docs/fleet.md, "The real fleet"): ``jobs_submitted`` by the workload,
    ``jobs_done`` results the dispatcher received (each job's result once, wherever it ran)."""

    sats: int
    scenario: str
    orbits: float
    warp: float
    broker: str
    sim_s: float
    wall_s: float
    jobs_submitted: int
    jobs_done: int
    reroutes: list[dict[str, Any]]
    satellites: dict[str, SatelliteReport]
    pace_slips: int = 0
    archive: str = ""
    plot: str = ""
    setup_s: float = 0.0

    @property
    def violation_s(self) -> float:
        return sum(s.violation_s for s in self.satellites.values())

    @property
    def routed_in_eclipse_share(self) -> float:
        """Share of the jobs routed to a satellite in eclipse (what power-blind routing would make
        :attr:`eclipse_share`)."""
        routed = sum(s.routed for s in self.satellites.values())
        return sum(s.routed_in_eclipse for s in self.satellites.values()) / routed if routed else 0.0

    @property
    def eclipse_share(self) -> float:
        """Mean share of the satellites' time in eclipse."""
        sats = list(self.satellites.values())
        return sum(s.eclipse_share for s in sats) / len(sats) if sats else 0.0


def sat_ids(n: int) -> list[str]:
    """``sat1`` .. ``satN``."""
    return [f"sat{k}" for k in range(1, n + 1)]


def phased_scenario(base: Scenario, phase_deg: float, dropout: tuple[float, float] | None = None,
                    initial_soc: float | None = None) -> Scenario:
    """``base`` with its circular orbit ``phase_deg`` further along, its battery at ``initial_soc`` (None:
    the scenario's) and a dropout of every telemetry channel over ``dropout`` = (start, end) simulated
    s; ValueError for a TLE orbit."""
    orbit = base.config.orbit
    if not isinstance(orbit, CircularOrbit):
        raise ValueError(f"scenario {base.name}: hil fleet phases a circular orbit; this one is a TLE")
    config = dataclasses.replace(base.config, orbit=dataclasses.replace(orbit, phase_deg=orbit.phase_deg + phase_deg),
                                 initial_soc=base.config.initial_soc if initial_soc is None else initial_soc)
    faults = base.faults if dropout is None else (*base.faults, Fault("dropout", dropout[0], dropout[1]))
    return dataclasses.replace(base, config=config, faults=faults)


@dataclass
class _Brokers:
    """Where each part connects: ``sat_urls`` (flightd; a cluster's list starting at a different node
    for each satellite), ``plant_urls`` (one node: the satellite's), ``ground`` (the dispatcher's URL or
    list) and ``recorder`` (one node)."""

    kind: str
    sat_urls: dict[str, str] = field(default_factory=dict)
    plant_urls: dict[str, str] = field(default_factory=dict)
    ground: str = ""
    recorder: str = ""


def _broker_plan(kind: str, urls: list[str], sats: list[str]) -> _Brokers:
    plan = _Brokers(kind, ground=",".join(urls), recorder=urls[0])
    for k, sat in enumerate(sats):
        rotated = urls[k % len(urls):] + urls[:k % len(urls)]
        plan.sat_urls[sat] = ",".join(rotated)
        plan.plant_urls[sat] = rotated[0]
    return plan


async def run_fleet_sil(
    sats: int = 6,
    scenario_name: str = "nominal-550km",
    orbits: float = 2.0,
    warp: float = 300.0,
    broker: str = "mosquitto",
    report_dir: Path | None = None,
    models: Path | None = None,
    model: str = "tile-fp32",
    tiles: int = 4,
    backlog: int = 12,
    dropout_sat: int | None = None,
    initial_soc: float | None = INITIAL_SOC,
    mqtt_port: int | None = None,
    progress: bool = True,
) -> FleetSilReport:
    """Run the fleet (see the module docstring) and return its report; ``broker``: ``mosquitto``
    (default), ``nats-cluster`` or a broker URL (list) already running; ``initial_soc``: every
    battery's state of charge at the start (None: the scenario's); ``mqtt_port``: the started broker's
    MQTT port (a cluster's node i: ``mqtt_port + i``; None: free ports)."""
    if sats < 1:
        raise ValueError("a fleet needs at least one satellite")
    if dropout_sat is not None and not 1 <= dropout_sat <= sats:
        raise ValueError(f"--dropout {dropout_sat}: satellites are numbered 1..{sats}")
    t_start = time.monotonic()
    base = load_scenario(scenario_name)
    names = sat_ids(sats)
    period_s = base.build_plant().linear_parameters().period_s
    sim_s = orbits * period_s
    base.config.orbit.check_span(sim_s)
    dropout = (DROPOUT_SPAN[0] * sim_s, DROPOUT_SPAN[1] * sim_s)
    scenarios = {sat: phased_scenario(base, 360.0 * k / sats, dropout if dropout_sat == k + 1 else None,
                                      initial_soc) for k, sat in enumerate(names)}
    report_dir = Path(report_dir or Path("runs") / f"fleet-{sats}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    models = Path(models or REPO_MODELS).resolve()
    input_name = tile_input_name(models, model)
    tlm_period_s = max(base.telemetry_period_s, 0.2 * warp)

    async with contextlib.AsyncExitStack() as stack:
        if broker == "mosquitto":
            mosquitto = stack.enter_context(MosquittoBroker(report_dir / "mosquitto", port=mqtt_port))
            plan = _broker_plan("mosquitto", [mosquitto.url], names)
        elif broker == "nats-cluster":
            ports = None if mqtt_port is None else [mqtt_port + i for i in range(3)]
            cluster = stack.enter_context(NatsCluster(report_dir / "nats", mqtt_ports=ports))
            plan = _broker_plan("nats-cluster", cluster.urls, names)
        else:
            plan = _broker_plan(broker, broker.split(","), names)
        if progress:
            log_console(f"fleet of {sats} on {plan.ground}: try `ground --broker {plan.ground} fleet status`; "
                        f"report in {report_dir}")
        archive_path = report_dir / "telemetry.sqlite3"
        stop_recording = asyncio.Event()
        ready = asyncio.Event()
        recorder = asyncio.create_task(record(archive_path, plan.recorder, sat=None, stop=stop_recording,
                                              on_ready=lambda _: ready.set()))
        await asyncio.wait_for(ready.wait(), 60)
        procs = {}
        for sat in names:
            gov = governor_config_for(scenarios[sat].build_plant(), base.limits, tlm_period_s)
            env = flightd_env(gov, [model], CONTROL_PERIOD_S, HEARTBEAT_S)
            procs[sat] = start_flightd(plan.sat_urls[sat], sat, report_dir / sat, models, env,
                                       report_dir / f"flightd-{sat}.log", report_dir)
            stack.callback(kill_if_running, procs[sat])
        fleet = await stack.enter_async_context(FleetDispatcher(plan.ground, names, timeout_s=sim_s / warp + 120))
        await asyncio.gather(*(wait_answering(fleet.clients[sat], procs[sat], report_dir / f"flightd-{sat}.log", 120)
                               for sat in names))
        setup_s = time.monotonic() - t_start

        async def run_job(inputs: dict[str, np.ndarray]) -> None:
            await fleet.run(model, inputs)

        workload = Workload(run_job, input_name, backlog, tiles)
        wall0 = time.monotonic()
        plants = [asyncio.create_task(serve_plant(plan.plant_urls[sat], sat, scenarios[sat], warp=warp,
                                                  duration_s=sim_s, rate_hz=1.0 / tlm_period_s,
                                                  physics_dt_s=min(PHYSICS_DT_S, tlm_period_s),
                                                  lockstep_s=tlm_period_s))
                  for sat in names]
        workload_task = asyncio.create_task(workload.run())
        slips = 0
        try:
            await _watch_progress(plants, fleet, sim_s, workload, progress)
            await workload.stop()  # the fleet's span ends with its first plant: no jobs to satellites going quiet
            workload_task.cancel()
            slips = sum(p.slips for p in await asyncio.gather(*plants))
        finally:
            wall_s = time.monotonic() - wall0
            await workload.stop()
            workload_task.cancel()
            for task in plants:
                task.cancel()
            await asyncio.gather(workload_task, *plants, return_exceptions=True)
            await asyncio.gather(*(stop_flightd(p) for p in procs.values()))
            await asyncio.sleep(0.5)
            stop_recording.set()
            await asyncio.gather(recorder, return_exceptions=True)
        stats = fleet.stats

    report = fleet_report(Archive(archive_path), scenarios, stats, sats, base.name, orbits, warp, plan.kind,
                          wall_s, workload, dropout_sat)
    report.pace_slips, report.setup_s = slips, setup_s
    from ground.tlm.plot import plot_fleet

    title = (f"hil fleet: {sats} satellites of {base.name} phased around the orbit, {orbits:g} orbits, "
             f"warp {warp:g}, {plan.kind}")
    report.archive = str(archive_path)
    report.plot = str(plot_fleet(Archive(archive_path), report_dir / "fleet.png", names, title=title))
    (report_dir / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def log_console(text: str) -> None:
    """One line for the operator on stderr."""
    print(text, file=sys.stderr, flush=True)


def fleet_report(archive: Archive, scenarios: dict[str, Scenario], stats: FleetStats, sats: int, scenario: str,
                 orbits: float, warp: float, broker: str, wall_s: float, workload: Workload,
                 dropout_sat: int | None) -> FleetSilReport:
    """The fleet report from the archive (per satellite, as hil sil's) and the dispatcher's counts."""
    satellites: dict[str, SatelliteReport] = {}
    sim_s = 0.0
    away = {sat: sum(1 for r in stats.reroutes if r.from_sat == sat) for sat in scenarios}
    routed_total = sum(stats.routed.values())
    for k, (sat, sc) in enumerate(scenarios.items()):
        r = report_from_archive(archive, sc, stats.routed[sat], stats.done[sat], wall_s, warp, orbits, sat=sat)
        sim_s = max(sim_s, r.sim_s)
        satellites[sat] = SatelliteReport(
            sat=sat, phase_deg=360.0 * k / sats, routed=stats.routed[sat],
            routed_in_eclipse=stats.routed_in_eclipse[sat], done=stats.done[sat],
            rerouted_away=away[sat], min_soc=r.min_soc, max_board_c=r.max_board_c, mode_s=r.mode_s,
            safe_after_startup_s=r.safe_after_startup_s, violation_s=r.violation_s,
            compute_energy_wh=r.compute_energy_wh, mode_changes=len(r.mode_changes),
            eclipse_share=_eclipse_share(archive, sat), dropout=dropout_sat == k + 1, probes=stats.probes[sat],
            passed_over=stats.passed_over[sat], starved=starved(stats.passed_over[sat], routed_total))
    reroutes = [{"job_id": r.job_id, "from": r.from_sat, "to": r.to_sat} for r in stats.reroutes]
    return FleetSilReport(sats=sats, scenario=scenario, orbits=orbits, warp=warp, broker=broker, sim_s=sim_s,
                          wall_s=wall_s, jobs_submitted=workload.submitted, jobs_done=sum(stats.done.values()),
                          reroutes=reroutes, satellites=satellites)


def _eclipse_share(archive: Archive, sat: str) -> float:
    """Share of ``sat``'s power samples taken in eclipse (``sunlit`` < 0.5)."""
    flags = [s.values[SUNLIT] < 0.5 for s in series(archive, POWER, sat) if SUNLIT in s.values]
    return sum(flags) / len(flags) if flags else 0.0


async def _watch_progress(plants: list[asyncio.Task[Pacer]], fleet: FleetDispatcher, sim_s: float,
                          workload: Workload, show: bool) -> None:
    """Until the first plant is done (a satellite whose plant has stopped soon goes SAFE on stale
    telemetry); live progress on stderr from the satellites' power telemetry."""
    from rich.progress import Progress

    latest: dict[str, Telemetry] = {}
    queue = await fleet.clients[fleet.sats[0]].watch_topic(f"{LIVE_ROOT}/+/tlm/power") if show else None
    drainer = asyncio.create_task(keep_latest(queue, latest, lambda m: m.sat) if queue else asyncio.sleep(0))
    try:
        with Progress(*progress_columns(), disable=not show, transient=False) as bar:
            task = bar.add_task("fleet", total=sim_s, info="")
            while not any(p.done() for p in plants):
                if latest:
                    statuses = fleet.statuses()
                    safe = [s for s, st in statuses.items() if st is not None and st.mode is Mode.SAFE]
                    socs = " ".join(f"{m.values.get(SOC, 0) * 100:.0f}" for _, m in sorted(latest.items()))
                    bar.update(task, completed=min(m.t_s for m in latest.values()),
                               info=f"SoC % {socs}  jobs {workload.done}  re-routed {len(fleet.stats.reroutes)}"
                                    + (f"  SAFE {','.join(safe)}" if safe else ""))
                await asyncio.sleep(0.25)
            bar.update(task, completed=sim_s)
    finally:
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)


def print_fleet_report(report: FleetSilReport) -> None:
    """The report as a rich table on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hil fleet — {report.sats} x {report.scenario}, {report.orbits:g} orbits "
                        f"({report.sim_s:.0f} s simulated in {report.wall_s:.0f} s, warp {report.warp:g}, "
                        f"{report.broker}; set-up {report.setup_s:.0f} s)")
    for col in ("sat", "phase", "in eclipse", "routed", "of which in eclipse", "probes", "done", "re-routed away",
                "passed over idle", "min SoC", "max board", "nominal s", "throttled s", "safe s", "violation s"):
        table.add_column(col, justify="left" if col == "sat" else "right", no_wrap=col == "sat")
    for s in report.satellites.values():
        table.add_row(s.sat + (" (dropout)" if s.dropout else "") + (" STARVED" if s.starved else ""),
                      f"{s.phase_deg:.0f}°", f"{s.eclipse_share * 100:.0f} %", str(s.routed), str(s.routed_in_eclipse),
                      str(s.probes), str(s.done), str(s.rerouted_away), str(s.passed_over), f"{s.min_soc * 100:.1f} %",
                      f"{s.max_board_c:.1f} °C", f"{s.mode_s.get('nominal', 0):.0f}",
                      f"{s.mode_s.get('throttled', 0):.0f}", f"{s.mode_s.get('safe', 0):.0f}", f"{s.violation_s:.0f}",
                      style="red" if s.starved else None)
    table.add_row("fleet", "", f"{report.eclipse_share * 100:.0f} %",
                  str(sum(s.routed for s in report.satellites.values())),
                  str(sum(s.routed_in_eclipse for s in report.satellites.values())),
                  str(sum(s.probes for s in report.satellites.values())), str(report.jobs_done),
                  str(len(report.reroutes)), str(sum(s.passed_over for s in report.satellites.values())),
                  "", "", "", "", "", f"{report.violation_s:.0f}", style="bold")
    console = Console(stderr=True, width=170)
    console.print(table)
    for s in report.satellites.values():
        if s.starved:
            console.print(f"[red]{s.sat} was starved: passed over {s.passed_over} times while idle with budget "
                          f"as jobs went to satellites with work ahead (a routed-by figure of it is wrong; "
                          f"docs/fleet.md, \"Stale figures\")[/red]")
    console.print(f"jobs submitted {report.jobs_submitted}, done {report.jobs_done}, re-routed {len(report.reroutes)}; "
                  f"routed to a satellite in eclipse: {report.routed_in_eclipse_share * 100:.0f} % of the jobs "
                  f"(satellites in eclipse {report.eclipse_share * 100:.0f} % of the time); plot {report.plot}")
