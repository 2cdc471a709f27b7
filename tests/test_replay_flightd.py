"""Record a ``hil sil`` run, replay its plant telemetry into a fresh flightd, and check that the fresh
governor makes the same mode transitions at the same simulated times (issue 6 part 4).

The SIL runs a scenario with a telemetry dropout, so the governor has something to decide from the
telemetry alone: leave the start-up SAFE when the first samples arrive, go SAFE when the samples
stop for longer than ``stale_periods`` telemetry periods, and come back when they resume. The
replay publishes the plant's channels (power, thermal, orbit) and its time tone (clock) into the live
namespace with the recorded wall-clock spacing (speed 1); the fresh flightd's mission clock follows
the replayed tones, as the SIL's followed the plant's.

What must agree: the sequence of modes, and each change's simulated time within one telemetry
period. Times cannot agree exactly: mission time moves in tone steps (a quarter period) and a
change happens at the 50 ms control cycle after the tone that makes it due; the start-up SAFE
itself is no event (flightd starts in SAFE), and the first change happens at the first sample after
start-up in both runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
from pathlib import Path
from typing import Any

from ground.tlm.archive import Archive
from ground.tlm.replay import replay_async
from hil.governor_sim import governor_config_for
from hil.mosquitto_broker import MosquittoBroker
from hil.scenario import SCENARIO_DIR, load_scenario
from hil.sil import run_sil
from link.codec import WireError, decode
from link.messages import Event, EventKind, Telemetry
from link.topics import TopicMap
from link.transport import BrokerUrl, make_client
from tests.support import FlightdProcess, wait_online

WARP = 300.0
ORBITS = 0.2  # 1148 s simulated, ~4 s of wall time
DROPOUT = (300.0, 600.0)  # simulated s: every channel silent, > 2 periods of 60 s
CONTROL_PERIOD_S = 0.05  # as hil.sil runs flightd


def _dropout_scenario(path: Path) -> Path:
    text = (SCENARIO_DIR / "nominal-550km.toml").read_text()
    text = text.replace('name = "nominal-550km"', 'name = "nominal-550km-dropout"')
    text += f'\n[[faults]]\nkind = "dropout"\nt_s = {DROPOUT[0]}\nuntil_s = {DROPOUT[1]}\n'
    path.write_text(text)
    return path


async def _collect_mode_events(broker: str, sat: str, out: list[dict[str, Any]], ready: asyncio.Event) -> None:
    async with make_client(BrokerUrl.parse(broker), identifier="test-replay-events") as client:
        await client.subscribe(TopicMap(sat).events, qos=1)
        ready.set()
        async for message in client.messages:
            if not isinstance(message.payload, bytes | bytearray):
                continue
            with contextlib.suppress(WireError):
                event = decode(bytes(message.payload), Event).message
                if event.kind is EventKind.MODE:
                    out.append({"t_s": float(event.details["t_s"]), "mode": event.details["mode"],
                                "reasons": event.details.get("reasons", [])})


async def test_replayed_sil_gives_same_mode_transitions(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    # 1. the SIL run (embedded broker), recorded to its archive
    scenario_path = _dropout_scenario(tmp_path / "dropout.toml")
    report = await run_sil(str(scenario_path), orbits=ORBITS, warp=WARP, report_dir=tmp_path / "sil",
                           progress=False)

    # The telemetry period the SIL used, read from the archive; the governor of the fresh flightd
    # must be told the same one (it sets the staleness limit).
    with Archive(report.archive) as archive:
        times = sorted(decode(r.payload, Telemetry).message.t_s for r in archive.messages(["power"]))
        tones = archive.channels().get("tlm/clock", 0)
    assert tones >= 4 * len(times), "the plant publishes its time tone at least four times a period"
    period_s = statistics.median(b - a for a, b in itertools.pairwise(times))
    assert period_s == max(1.0, 0.2 * WARP)
    t_last_before, t_first_after = max(t for t in times if t < DROPOUT[0]), min(t for t in times if t >= DROPOUT[1])
    # Compare what happened while telemetry flowed: once it ends, either flightd may go SAFE on stale
    # telemetry (the SIL's while it is being stopped, the fresh one after the replay), at the earliest
    # 2 periods after the last sample.
    end_s = times[-1] + 1.5 * period_s
    sil_changes = [(float(c["t_s"]), str(c["mode"])) for c in report.mode_changes if float(c["t_s"]) <= end_s]

    # The SIL itself did what the telemetry demands: NOMINAL at the first sample, SAFE once the last
    # sample before the dropout is more than 2 periods old, NOMINAL again at the first sample after.
    assert [m for _, m in sil_changes] == ["nominal", "safe", "nominal"], sil_changes
    assert abs(sil_changes[0][0] - times[0]) < period_s
    stale_at = t_last_before + 2 * period_s
    assert stale_at <= sil_changes[1][0] < stale_at + 2 * period_s
    assert abs(sil_changes[2][0] - t_first_after) < period_s

    # 2. a fresh flightd on Mosquitto with the SIL's governor configuration
    scenario = load_scenario(scenario_path)
    gov = governor_config_for(scenario.build_plant(), scenario.limits, period_s)
    models = tmp_path / "models"
    models.mkdir()
    flightd = FlightdProcess(mosquitto.url, tmp_path / "fresh" / "data", models, env={
        "ORBITD_GOVERNOR": gov.model_dump_json(), "ORBITD_CONTROL_PERIOD_S": str(CONTROL_PERIOD_S)})
    (tmp_path / "fresh").mkdir()
    events: list[dict[str, Any]] = []
    ready = asyncio.Event()
    collector = asyncio.create_task(_collect_mode_events(mosquitto.url, "sat1", events, ready))
    flightd.start()
    try:
        await asyncio.wait_for(ready.wait(), 10)
        await wait_online(mosquitto.url)
        # 3. replay the plant's telemetry as live, at the recorded pace (= the SIL's warp)
        slip = await replay_async(report.archive, mosquitto.url, speed=1.0, as_live=True, sat="sat1",
                                  channels=["power", "thermal", "orbit", "clock"])
        assert slip.sent == 3 * len(times) + tones
        deadline = asyncio.get_running_loop().time() + 5
        while len(events) < len(sil_changes) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # anything more would show up now
        assert flightd.alive(), flightd.log()[-3000:]
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        flightd.stop()

    # 4. same transitions, same simulated times within one telemetry period (0.2 s of wall time)
    replay_changes = [(e["t_s"], e["mode"]) for e in events if e["t_s"] <= end_s]
    assert [m for _, m in replay_changes] == [m for _, m in sil_changes], (sil_changes, events)
    for (t_sil, mode), (t_replay, _) in zip(sil_changes, replay_changes, strict=True):
        assert abs(t_replay - t_sil) <= period_s, (mode, t_sil, t_replay)
    # after the end of the replay the fresh flightd can only have gone SAFE for stale telemetry
    after = [e for e in events if e["t_s"] > end_s]
    assert all(e["mode"] == "safe" and any("stale" in r for r in e["reasons"]) for e in after), after
