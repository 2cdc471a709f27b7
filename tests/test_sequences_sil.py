"""Sequences end to end in the SIL loop, on the SIL's own machinery (hil.sil's flightd settings, the
plant in lock-step with flightd, its time tones carrying the MET): a real Mosquitto, flightd (a real
process with the governor, killed with SIGKILL and restarted mid-run) and the ground. A sequence
with an eclipse-exit entry, a relative entry and an absolute entry is uploaded from a TOML file;
every entry fires exactly once at its simulated time (within one control period), and a +1 h jump of
the telemetry's mission time during the relative entry's delay does not move it."""

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
from hil.mosquitto_broker import MosquittoBroker
from hil.plant_service import ClockJumps, PlantRunner, serve
from hil.scenario import Scenario, load_scenario
from hil.sil import CONTROL_PERIOD_S, sil_flightd_env, sil_telemetry_period_s
from link.codec import WireError, decode
from link.messages import Telemetry
from link.sequence import ListSequences, UploadSequence
from link.telemetry import CLOCK, MET_S, ORBIT, SUNLIT
from tests.support import FlightdProcess, copy_bundled, wait_online

WARP = 200.0
CONTROL_SIM_S = CONTROL_PERIOD_S * WARP
"""One control period in simulated seconds at most (the plant never runs faster than the warp)."""
DELAY_S = 2400.0
JUMP_S = 3600.0


def first_eclipse_exit(scenario: Scenario, period_s: float) -> float:
    """Simulated time of the first sunlit sample after an eclipse, as the plant will publish it."""
    runner = PlantRunner(scenario, period_s)
    previous = None
    t = 0.0
    while t < 20_000:
        t += period_s
        for s in runner.advance_to(t):
            if s.channel == ORBIT:
                if previous == 0.0 and s.values[SUNLIT] == 1.0:
                    return s.t_s
                previous = s.values[SUNLIT]
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
    period_s = sil_telemetry_period_s(scenario, WARP)
    exit_s = first_eclipse_exit(scenario, period_s)
    jump_at = exit_s + 300.0                       # during the relative entry's delay
    kill_at = exit_s + 600.0                       # kill -9 flightd during that delay, restart at once
    at_true_s = exit_s + 3200.0                    # the absolute entry, in the plant's own time...
    at_mission_s = at_true_s + JUMP_S              # ...as the jumped mission clock reads it
    end_s = at_true_s + 600.0
    jumps = ClockJumps(((jump_at, JUMP_S),))
    models = copy_bundled(tmp_path / "models", "digits-int8")
    data = tmp_path / "data"
    flightd = FlightdProcess(mosquitto.url, data, models, env=sil_flightd_env(scenario, WARP, ["digits-int8"]))
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
                                                   rate_hz=1.0 / period_s, lockstep_s=period_s,
                                                   clock_jumps=jumps.jumps))
            killed_wall = None
            while not plant_task.done():
                met = max((s.values[MET_S] for _, s in samples if s.channel == CLOCK), default=0.0)
                if killed_wall is None and met >= kill_at:
                    flightd.kill9()
                    killed_wall = time.time()
                    flightd.start()
                await asyncio.sleep(0.01)
            await plant_task
            assert killed_wall is not None, "the plant ended before flightd was killed"
            await wait_online(mosquitto.url)
            listing = await ground.sequence_command(ListSequences())
            recorder.cancel()
    finally:
        flightd.stop()
    log = flightd.log()
    assert log.count("re-armed 1 sequence(s): pass1") == 1, log[-3000:]
    assert "its times moved by" not in log, log[-3000:]  # resumed on the simulator's MET, no estimate

    with sqlite3.connect(data / "journal.sqlite3") as db:
        firings = {r[0]: r[1:] for r in db.execute(
            "SELECT entry, occurrence, job_id, action, late_s, mission_s, fired_utc FROM sequence_firings"
            " WHERE sequence_id = 'pass1'")}
        jobs = {r[0]: r[1] for r in db.execute("SELECT job_id, completions FROM jobs")}
        state = db.execute("SELECT state FROM sequences WHERE sequence_id = 'pass1'").fetchone()[0]
    # every entry fired exactly once, as one ordinary job each, and the sequence is done
    assert sorted(firings) == ["at", "exit", "later"], firings
    assert all(f[0] == 1 and f[2] == "run" for f in firings.values()), firings
    assert sorted(jobs) == ["pass1_at_1", "pass1_exit_1", "pass1_later_1"], jobs
    assert all(c <= 1 for c in jobs.values())
    assert state == "done" and listing[0]["state"] == "done"
    assert any(s.t_s >= jump_at + JUMP_S for _, s in samples), "the mission time jumped"

    tones = sorted((w, s.values[MET_S]) for w, s in samples if s.channel == CLOCK)

    def plant_time(wall: float) -> float:
        """The plant's own time at wall time ``wall``, interpolated between the tones received (a
        held plant repeats its tone, so a hold is not smeared over)."""
        walls, mets = zip(*tones, strict=True)
        return float(np.interp(wall, walls, mets))

    exit_seen = min(s.t_s for _, s in samples if s.channel == ORBIT and s.values[SUNLIT] == 1.0
                    and s.t_s > exit_s - period_s)
    fired = {entry: (jumps.own(f[4]), f[5]) for entry, f in firings.items()}  # (plant time at firing, wall)
    report = json.dumps({"exit_seen": exit_seen, "jump_at": jump_at, "kill_at": kill_at, "at_true": at_true_s,
                         "fired_own_s": {e: v[0] for e, v in fired.items()},
                         "fired_sim_by_wall": {e: plant_time(v[1]) for e, v in fired.items()},
                         "killed_sim_by_wall": plant_time(killed_wall)}, indent=1)
    print(report)
    # flightd was killed during the relative entry's delay, after the jump
    assert jump_at < plant_time(killed_wall) < fired["later"][0], report
    # Each firing at its simulated time, within one control period, in flightd's own record (the mission
    # time of the firing, mapped back onto the plant's time); and, as the ground saw the plant when the
    # job was fired, within lock-step's lead (one telemetry period) of it, wherever delivery lagged.
    # eclipse exit: in the control cycle of the first sunlit sample (mission time moves in tone steps)
    assert abs(fired["exit"][0] - exit_seen) <= CONTROL_SIM_S, report
    assert abs(plant_time(fired["exit"][1]) - exit_seen) <= period_s, report
    # relative: DELAY_S of the plant's time after the exit, across the kill -9 and the +1 h jump
    assert 0.0 <= fired["later"][0] - fired["exit"][0] - DELAY_S <= CONTROL_SIM_S, report
    assert abs(plant_time(fired["later"][1]) - (exit_seen + DELAY_S)) <= period_s, report
    # absolute: at the (jumped) mission time it names, i.e. the plant's at_true_s
    assert 0.0 <= firings["at"][4] - at_mission_s <= CONTROL_SIM_S, report
    assert abs(fired["at"][0] - at_true_s) <= CONTROL_SIM_S, report
    assert abs(plant_time(fired["at"][1]) - at_true_s) <= period_s, report
