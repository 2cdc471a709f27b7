"""The real fleet: flightd processes with their plants and the ground fleet dispatcher on Mosquitto.

A job routed to a satellite that goes SAFE (its plant stops publishing telemetry) before running it is
cancelled there, confirmed, and re-routed exactly once; it runs once, on the other satellite.
``ground fleet status`` shows the fleet; ``hil fleet --sats 2`` runs end to end with its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from ground.cli import main as ground_main
from ground.fleet.cli import STATUS_COLUMNS, print_status_table, status_row
from ground.fleet.dispatcher import FleetDispatcher
from hil.fleet_sil import phased_scenario, run_fleet_sil
from hil.governor_sim import governor_config_for
from hil.mosquitto_broker import MosquittoBroker
from hil.plant_service import serve as serve_plant
from hil.scenario import Scenario, load_scenario
from hil.sil import flightd_env
from link.messages import DispatchOutlook, Mode, Status
from tests.support import FlightdProcess, copy_bundled, wait_online, wait_until

DIGITS = "digits-int8"
WARP = 50.0
TLM_PERIOD_S = max(1.0, 0.2 * WARP)  # as hil sil and hil fleet choose it
ECLIPSE_PHASE_DEG = 360.0 * (1801.0 + 1000.0) / 5739.0
"""nominal-550km: orbit noon at t = 0, eclipse from 1801 s for 2136 s; this phase starts 1000 s into it."""


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return copy_bundled(tmp_path / "models", DIGITS)


def _flightd(mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path, sat: str, sc: Scenario) -> FlightdProcess:
    gov = governor_config_for(sc.build_plant(), sc.limits, TLM_PERIOD_S)
    return FlightdProcess(mosquitto.url, tmp_path / f"data-{sat}", models_dir, sat=sat,
                          env=flightd_env(gov, [DIGITS], control_period_s=0.1, heartbeat_s=0.5))


async def _mode(fleet: FleetDispatcher, sat: str, modes: tuple[Mode, ...], timeout_s: float) -> None:
    def seen() -> bool:
        s = fleet.statuses()[sat]
        return s is not None and s.outlook is not None and s.mode in modes
    await wait_until(seen, timeout_s, f"{sat} in {', '.join(m.value for m in modes)}")


async def test_job_on_a_satellite_gone_safe_is_rerouted_once_and_runs_once(
    mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sat-b: in eclipse at 36 % SoC (a budget of 0 cores: jobs wait), telemetry dropout from 400 s; sat-a:
    sunlit, its plant started only once the job waits on sat-b (until then SAFE: no telemetry). The job
    goes to sat-b, sat-b goes SAFE, the dispatcher cancels it there (confirmed) and sends it to sat-a."""
    base = load_scenario("nominal-550km")
    sc_a = phased_scenario(base, 0.0)
    sc_b = phased_scenario(base, ECLIPSE_PHASE_DEG, dropout=(400.0, 1e6), initial_soc=0.36)
    procs = {"sat-a": _flightd(mosquitto, tmp_path, models_dir, "sat-a", sc_a),
             "sat-b": _flightd(mosquitto, tmp_path, models_dir, "sat-b", sc_b)}
    for p in procs.values():
        p.start()
    plants: list[asyncio.Task[object]] = []

    def plant(sat: str, sc: Scenario) -> None:
        plants.append(asyncio.create_task(serve_plant(mosquitto.url, sat, sc, warp=WARP, rate_hz=1.0 / TLM_PERIOD_S,
                                                      lockstep_s=TLM_PERIOD_S, duration_s=3000.0)))
    try:
        for sat in procs:
            await wait_online(mosquitto.url, sat)
        async with FleetDispatcher(mosquitto.url, ["sat-a", "sat-b"], timeout_s=60.0) as fleet:
            plant("sat-b", sc_b)
            await _mode(fleet, "sat-b", (Mode.THROTTLED,), 20.0)
            b = fleet.statuses()["sat-b"]
            assert b is not None and b.outlook is not None
            assert b.outlook.busy_cores == 0.0 and b.outlook.in_eclipse and b.outlook.soc is not None
            assert fleet.statuses()["sat-a"].mode is Mode.SAFE  # type: ignore[union-attr]

            job = await fleet.submit(DIGITS, {"image": np.zeros((1, 1, 8, 8), np.float32)})
            assert job.course.sat == "sat-b" and job.submitted is not None
            assert job.submitted.ack.state.value == "queued"
            assert job.route.reasons == {"sat-a": "SAFE"}
            plant("sat-a", sc_a)
            await _mode(fleet, "sat-a", (Mode.NOMINAL, Mode.THROTTLED), 20.0)
            assert (await fleet.clients["sat-b"].job(job.job_id))["state"] == "queued"  # still waiting there

            outcome = await fleet.follow(job, timeout_s=60.0)
            assert outcome.sat == "sat-a" and outcome.sats == ("sat-b", "sat-a") and outcome.rerouted
            assert outcome.fetched.outputs["logits"].shape == (1, 10)
            assert [(r.from_sat, r.to_sat) for r in fleet.stats.reroutes] == [("sat-b", "sat-a")]
            on_a = await fleet.clients["sat-a"].job(job.job_id)
            on_b = await fleet.clients["sat-b"].job(job.job_id)
            assert on_a["state"] == "done" and on_a["completions"] == 1 and on_a["attempt"] == 1

            # the run on sat-a measured its cost: the outlook says how old that figure is; sat-b never ran one
            def measured() -> bool:
                a = fleet.statuses()["sat-a"]
                return a is not None and a.outlook is not None and DIGITS in a.outlook.job_cost_age_s
            await wait_until(measured, 5.0, "sat-a's cost estimate measured")
            b = fleet.statuses()["sat-b"]
            assert b is not None and b.outlook is not None and DIGITS not in b.outlook.job_cost_age_s
            assert on_b["state"] == "cancelled" and on_b["completions"] == 0 and on_b["attempt"] == 0
            assert fleet.statuses()["sat-b"].mode is Mode.SAFE  # type: ignore[union-attr]

            # the fleet as the operator sees it: ground fleet status (JSON, then the table)
            capsys.readouterr()
            assert await asyncio.to_thread(ground_main, ["--broker", mosquitto.url, "fleet", "status", "--json"]) == 0
            rows = {r["sat"]: r for r in json.loads(capsys.readouterr().out)}
            assert set(rows) == {"sat-a", "sat-b"} and rows["sat-b"]["mode"] == "safe"
            assert rows["sat-a"]["mode"] in ("nominal", "throttled") and rows["sat-a"]["phase"] == "sunlit"
            assert rows["sat-a"]["busy_cores"] > 0 and 0 < rows["sat-a"]["soc"] <= 1
            assert rows["sat-b"]["busy_cores"] == 0 and rows["sat-b"]["phase"] == "eclipse"
            assert all(0 <= r["age_s"] < 5 for r in rows.values())
            assert await asyncio.to_thread(ground_main, ["--broker", mosquitto.url, "fleet", "status"]) == 0
            table = capsys.readouterr().out
            assert "sat-a" in table and "sat-b" in table and "safe" in table and "cores now" in table
    finally:
        for task in plants:
            task.cancel()
        await asyncio.gather(*plants, return_exceptions=True)
        for p in procs.values():
            p.stop()
    assert "cancelled by ground command" in procs["sat-b"].log()
    for p in procs.values():
        assert "Traceback" not in p.log(), p.log()[-3000:]


def test_fleet_status_table_shows_every_column(capsys: pytest.CaptureFixture[str]) -> None:
    outlook = DispatchOutlook(busy_cores=0.6, orbit_busy_cores=1.37, in_eclipse=True, phase_left_s=4000.0,
                              mission_rate=200.0, committed_core_s=[0.0] * 9 + [1.5], running_core_s=0.25,
                              job_core_s={"m": 0.01}, thermal_headroom_c=31.5, soc=0.462)
    now = time.time()
    status = Status(sat="sat7", state="online", at_utc=now - 0.4, heartbeat_s=0.5, mode=Mode.THROTTLED,
                    queue_depth=3, running=["j1"], budget_w=33.0, outlook=outlook)
    row = status_row(status, now)
    assert set(row) == set(STATUS_COLUMNS)
    # the outlook's mission seconds, and the same in wall seconds at its warp of 200
    assert row["phase_left_s"] == pytest.approx(4000.0) and row["phase_left_wall_s"] == pytest.approx(20.0)
    assert row["committed_core_s"] == pytest.approx(1.75)
    assert row["age_s"] == pytest.approx(0.4, abs=0.05)
    print_status_table([row, status_row(Status(sat="sat8", state="offline"), now)], "fleet")
    out = capsys.readouterr().out
    for text in ("sat7", "throttled", "46.2", "eclipse", "4000.0", "20.0", "mission s", "wall s", "0.60", "1.37",
                 "33.0", "1.75", "31.5", "sat8", "offline"):
        assert text in out, (text, out)


def test_hil_fleet_two_satellites_end_to_end(tmp_path: Path) -> None:
    """``hil fleet --sats 2`` (short): both flightd up, jobs routed to both and done, the report and the
    fleet plot written; satellite 2 loses its telemetry for a while and is SAFE for it."""
    report = asyncio.run(run_fleet_sil(sats=2, orbits=0.35, warp=300.0, report_dir=tmp_path / "run", backlog=8,
                                       dropout_sat=2, progress=False))
    sats = report.satellites
    assert set(sats) == {"sat1", "sat2"} and sats["sat2"].dropout and not sats["sat1"].dropout
    assert report.jobs_done > 20 and report.jobs_done == sum(s.done for s in sats.values())
    assert all(s.routed > 0 and s.done > 0 for s in sats.values()), sats
    assert sats["sat2"].safe_after_startup_s > 0 and sats["sat1"].safe_after_startup_s == 0
    assert report.violation_s == 0
    assert sats["sat1"].phase_deg == 0 and sats["sat2"].phase_deg == 180
    assert report.sim_s > 0.3 * 5739
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["jobs_done"] == report.jobs_done and set(saved["satellites"]) == {"sat1", "sat2"}
    image = mpimg.imread(report.plot)
    assert image.shape[0] > 600 and image.shape[1] > 1000
    with contextlib.suppress(FileNotFoundError):
        assert "Traceback" not in (tmp_path / "run" / "flightd-sat1.log").read_text()
