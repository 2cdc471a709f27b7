"""``hil sil --link`` end to end: the board side (flightd, onboard Mosquitto, plant) in its own network
namespace behind the link relay, three contact windows, jobs submitted in and out of contact, and a
kill -9 of flightd in the middle of the second pass. Every job submitted completes exactly once, every
result reaches the ground, jobs sent out of contact go up at the next acquisition, and the governor
never sees its telemetry go stale for want of the ground link.

Without root (no namespace) the same run uses the loopback board side. About a minute of wall time."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from hil.link.board import BoardSide
from hil.link.contact import ContactPlan, ContactWindow
from hil.link.rig import LinkRig
from hil.scenario import load_scenario
from hil.sil import LinkOptions, SilReport, netns_possible, run_sil, sil_telemetry_period_s

CONTACTS = ((40.0, 120.0), (240.0, 440.0), (560.0, 640.0))
SIM_S = 680.0
KILL_AT_S = 261.0
BURST = tuple(260.0 + 0.1 * k for k in range(12))  # going up when flightd is killed
SCHEDULE = (5.0, 20.0,  # before the first contact
            50.0, 70.0, 90.0, 110.0,  # in contact 1
            150.0, 200.0,  # gap
            *BURST, 300.0, 350.0, 400.0,  # contact 2: the burst, the kill, jobs while flightd restarts
            470.0, 520.0,  # gap
            580.0, 600.0)  # contact 3


async def run_across_passes(report_dir: Path, contacts: tuple[tuple[float, float], ...], sim_s: float,
                            schedule: tuple[float, ...], during: Callable[[LinkRig], Coroutine[Any, Any, None]],
                            board: str | BoardSide = "auto", timeout_s: float = 240.0
                            ) -> tuple[SilReport, dict[str, Any]]:
    """``hil sil --link passes`` on nominal-550km with ``contacts`` (mission s) for ``sim_s``, jobs of
    digits-int8 sent at ``schedule``, ``during`` run alongside: (the report, its jobs by id)."""
    plan = ContactPlan(0.0, sim_s + 1.0, tuple(ContactWindow("gs", a, b) for a, b in contacts), 0.01)
    period = load_scenario("nominal-550km").build_plant().linear_parameters().period_s
    report = await asyncio.wait_for(run_sil(
        "nominal-550km", orbits=sim_s / period, warp=100.0, report_dir=report_dir, model="digits-int8", tiles=16,
        progress=False,
        link=LinkOptions("passes", contact_warp=10.0, board=board, plan=plan, schedule=schedule,
                         resend_contact_s=60.0, during=during)), timeout_s)
    assert report.link is not None
    return report, {j["job_id"]: j for j in json.loads((report_dir / "jobs.json").read_text())}


async def test_jobs_complete_exactly_once_across_passes_and_a_kill9_mid_pass(tmp_path: Path) -> None:
    killed: list[float] = []

    async def kill_mid_pass(rig: LinkRig) -> None:
        await rig.clock.sleep_until(KILL_AT_S)
        rig.kill_flightd()
        killed.append(rig.clock.now())
        rig.start_flightd()
        await rig.wait_online()

    report_dir = tmp_path / "run"
    report, jobs = await run_across_passes(report_dir, CONTACTS, SIM_S, SCHEDULE, kill_mid_pass)
    link = report.link
    assert link is not None
    assert link["board"] == ("netns" if netns_possible() else "loopback")

    # the kill came in the middle of the second pass, with jobs on their way
    assert len(killed) == 1 and CONTACTS[1][0] < killed[0] < CONTACTS[1][1]
    assert any(j["sent_s"] < killed[0] < j["result_s"] for j in jobs.values())

    # every job submitted completed, once, and its result reached the ground
    assert link["jobs_submitted"] == len(SCHEDULE) == len(jobs)
    assert link["jobs_done"] == len(SCHEDULE), {k: v for k, v in jobs.items() if v["result_s"] is None}
    assert link["unanswered"] == 0 and link["duplicated"] == 0 and link["failed"] == {}
    assert all(len(j["runs"]) == 1 for j in jobs.values())
    with sqlite3.connect(report_dir / "flightd" / "journal.sqlite3") as db:
        onboard = dict(db.execute("SELECT job_id, completions FROM jobs").fetchall())
        states = {s for (s,) in db.execute("SELECT DISTINCT state FROM jobs")}
    assert onboard == {job_id: 1 for job_id in jobs} and states == {"done"}

    # jobs sent out of contact went up at the next acquisition; nothing ran before its contact
    check = link["plan_check"]
    assert check["out_of_contact"] == 6 and check["out_of_contact_next_pass"] == 6
    for j in jobs.values():
        first = next(a for a, b in CONTACTS if b > j["sent_s"])
        assert j["result_s"] >= first

    # three passes, each ended by the relay at loss of signal; the bridge reconnected at each
    assert [(p["aos_s"], p["los_s"]) for p in link["passes"]] == [pytest.approx(c) for c in CONTACTS]
    assert all(p["bridge_up_s"] is not None and p["bytes_up"] > 0 and p["bytes_down"] > 0 for p in link["passes"])
    assert link["relay_events"]["cut_los"] >= 3

    # the ground's telemetry has the gaps: nothing from the loss of signal until the bridge's next attempt,
    # which the relay holds; what the plant published after that attempt began may come down late at the
    # acquisition (Mosquitto keeps QoS 0 for a pending connection: docs/hil.md, "Measured")
    gaps = link["telemetry_gaps"]
    events = json.loads((report_dir / "link-events.json").read_text())
    period = sil_telemetry_period_s(load_scenario("nominal-550km"), 100.0)
    for (_, los), (aos, _) in itertools.pairwise(CONTACTS):
        held = min((e["t_s"] for e in events if e["kind"] == "held" and los <= e["t_s"] < aos), default=aos)
        assert any(a <= los + period and b >= held - period for a, b in gaps), (los, held, gaps)
    # the governor onboard never saw stale telemetry
    assert not any("stale" in " ".join(c["reasons"]) for c in report.mode_changes), report.mode_changes
    assert Path(report.plot).stat().st_size > 10_000
