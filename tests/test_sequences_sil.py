"""Sequences end to end in the SIL loop: the plant (SGP4-free circular orbit, warp 200) on a real
Mosquitto, flightd (a real process with the governor, killed with SIGKILL and restarted mid-run) and
the ground. A sequence with an eclipse-exit entry, a relative entry and an absolute entry is
uploaded from a TOML file; every entry fires exactly once at its simulated time (within one
control period), and a +1 h jump of the telemetry's mission time during the relative entry's
delay does not move it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from ground.client import GroundClient
from ground.seq import load_sequence_file
from hil.governor_sim import governor_config_for
from hil.mosquitto_broker import MosquittoBroker
from hil.plant_service import PlantRunner, serve
from hil.scenario import load_scenario
from link.codec import WireError, decode
from link.messages import Telemetry
from link.sequence import ListSequences, UploadSequence
from tests.support import FlightdProcess, copy_bundled, wait_online

WARP = 200.0
CONTROL_PERIOD_S = 0.05
PERIOD_SIM_S = CONTROL_PERIOD_S * WARP  # one control period in simulated seconds
TLM_PERIOD_SIM_S = 0.2 * WARP
DELAY_S = 2400.0
JUMP_S = 3600.0


def first_eclipse_exit(scenario_name: str) -> float:
    """Simulated time of the first sunlit sample after an eclipse, as the plant will publish it."""
    runner = PlantRunner(load_scenario(scenario_name), TLM_PERIOD_SIM_S)
    previous = None
    t = 0.0
    while t < 20_000:
        t += TLM_PERIOD_SIM_S
        for s in runner.advance_to(t):
            if s.channel == "orbit":
                if previous == 0.0 and s.values["sunlit"] == 1.0:
                    return s.t_s
                previous = s.values["sunlit"]
    raise AssertionError("no eclipse exit")


def write_sequence(directory: Path, at_mission_s: float) -> Path:
    np.save(directory / "frame.npy", np.zeros((1, 1, 8, 8), np.float32))
    path = directory / "pass.toml"
    path.write_text(f"""
sequence_id = "pass1"
description = "eclipse exit, then {DELAY_S:g} s later, then at mission time {at_mission_s:g} s"

[[entries]]
name = "exit"
trigger = {{ kind = "event", event = "eclipse_exit" }}
job = {{ model = "digits-int8", inputs = {{ image = "frame.npy" }} }}

[[entries]]
name = "later"
trigger = {{ kind = "after", delay_s = {DELAY_S} }}
job = {{ model = "digits-int8", inputs = {{ image = "frame.npy" }}, priority = 7 }}

[[entries]]
name = "at"
trigger = {{ kind = "at", mission_s = {at_mission_s} }}
late = "fail"
job = {{ model = "digits-int8", inputs = {{ image = "frame.npy" }} }}
""")
    return path


@pytest.mark.slow
async def test_sequence_survives_kill9_and_ignores_a_clock_jump(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    scenario = load_scenario("nominal-550km")
    exit_s = first_eclipse_exit(scenario.name)
    jump_at = exit_s + 300.0                       # during the relative entry's delay
    kill_at = exit_s + 600.0                       # kill -9 flightd during that delay, restart at once
    at_true_s = exit_s + 3200.0                    # the absolute entry, in the plant's own time...
    at_mission_s = at_true_s + JUMP_S              # ...as the jumped mission clock reads it
    end_s = at_true_s + 600.0
    models = copy_bundled(tmp_path / "models", "digits-int8")
    plant = scenario.build_plant()
    governor = governor_config_for(plant, scenario.limits, TLM_PERIOD_SIM_S)
    env = {"ORBITD_GOVERNOR": governor.model_dump_json(), "ORBITD_CONTROL_PERIOD_S": str(CONTROL_PERIOD_S),
           "ORBITD_SEQUENCES__TIME_SCALE": str(WARP), "ORBITD_LINK__HEARTBEAT_S": "1.0"}
    data = tmp_path / "data"
    flightd = FlightdProcess(mosquitto.url, data, models, env=env)
    flightd.start()
    samples: list[tuple[float, Telemetry]] = []  # (wall time received, sample)
    try:
        await wait_online(mosquitto.url)
        async with GroundClient(mosquitto.url, "sat1", timeout_s=10) as ground:
            sequence = load_sequence_file(write_sequence(tmp_path, at_mission_s))
            reply = await ground.sequence_command(UploadSequence(sequence=sequence))
            assert reply["state"] == "armed" and reply["entries"] == 3
            tlm = await ground.watch_topic(ground.topics.telemetry_all)

            async def record() -> None:
                while True:
                    _, payload = await tlm.get()
                    with contextlib.suppress(WireError):
                        samples.append((time.time(), decode(payload, Telemetry).message))

            recorder = asyncio.create_task(record())
            plant_task = asyncio.create_task(serve(mosquitto.url, "sat1", scenario, warp=WARP, duration_s=end_s,
                                                   rate_hz=1.0 / TLM_PERIOD_SIM_S, clock_jumps=((jump_at, JUMP_S),)))
            killed = False
            while not plant_task.done():
                latest = max((s.t_s for _, s in samples if s.channel == "orbit"), default=0.0)
                if not killed and latest >= kill_at + JUMP_S:
                    flightd.kill9()
                    flightd.start()
                    killed = True
                await asyncio.sleep(0.01)
            await plant_task
            assert killed, "the plant ended before flightd was killed"
            await wait_online(mosquitto.url)
            listing = await ground.sequence_command(ListSequences())
            recorder.cancel()
    finally:
        flightd.stop()
    log = flightd.log()
    assert log.count("re-armed 1 sequence(s): pass1") == 1, log[-3000:]

    with sqlite3.connect(data / "journal.sqlite3") as db:
        firings = {r[0]: r[1:] for r in db.execute(
            "SELECT entry, occurrence, job_id, action, late_s, mission_s, fired_utc FROM sequence_firings"
            " WHERE sequence_id = 'pass1'")}
        jobs = {r[0]: r[1] for r in db.execute("SELECT job_id, completions FROM jobs")}
        state = db.execute("SELECT state FROM sequences WHERE sequence_id = 'pass1'").fetchone()[0]
    # every entry fired exactly once, as one ordinary job each, and the sequence is done
    assert sorted(firings) == ["at", "exit", "later"], firings
    assert all(f[0] == 1 and f[2] == "run" for f in firings.values()), firings
    assert sorted(jobs) == ["pass1.at.1", "pass1.exit.1", "pass1.later.1"], jobs
    assert all(c <= 1 for c in jobs.values())
    assert state == "done" and listing[0]["state"] == "done"

    def true_sim_time(wall: float) -> float:
        """The plant's own time at wall time ``wall``, interpolated between received samples."""
        pts = sorted((w, s.t_s - (JUMP_S if s.t_s >= jump_at + JUMP_S else 0.0))
                     for w, s in samples if s.channel == "power")
        walls, sims = zip(*pts, strict=True)
        return float(np.interp(wall, walls, sims))

    exit_seen = min(s.t_s for _, s in samples if s.channel == "orbit" and s.values["sunlit"] == 1.0
                    and s.t_s > exit_s - TLM_PERIOD_SIM_S)
    _, _, _, _, exit_mission, exit_wall = firings["exit"]
    _, _, _, _, _, later_wall = firings["later"]
    _, _, _, _, at_mission, at_wall = firings["at"]
    report = json.dumps({"exit_seen": exit_seen, "exit_fired_mission": exit_mission,
                         "exit_fired_sim": true_sim_time(exit_wall),
                         "later_minus_exit_sim": (later_wall - exit_wall) * WARP,
                         "at_fired_mission": at_mission, "at_fired_sim": true_sim_time(at_wall)}, indent=1)
    print(report)
    # eclipse exit: in the control cycle after the first sunlit sample
    assert 0.0 <= exit_mission - exit_seen <= PERIOD_SIM_S, report
    assert abs(true_sim_time(exit_wall) - exit_seen) <= 2 * PERIOD_SIM_S, report
    # relative: DELAY_S after the exit on the monotonic clock, across the kill -9 and the +1 h jump
    assert 0.0 <= (later_wall - exit_wall) * WARP - DELAY_S <= PERIOD_SIM_S, report
    assert abs(true_sim_time(later_wall) - true_sim_time(exit_wall) - DELAY_S) <= 2 * PERIOD_SIM_S, report
    # absolute: at the (jumped) mission time it names
    assert 0.0 <= at_mission - at_mission_s <= PERIOD_SIM_S, report
    assert abs(true_sim_time(at_wall) - at_true_s) <= 2 * PERIOD_SIM_S, report
