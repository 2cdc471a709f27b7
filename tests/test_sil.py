"""``hil sil`` end to end (CLI subprocess, embedded broker) and the report arithmetic on a hand-made archive.

Expected numbers come from closed forms (orbit period, telemetry period rule, board power profile,
bus power balance) or from sums worked out by hand, never from the code's own output.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from ground.tlm.archive import Archive, topic_row
from hil.scenario import load_scenario
from hil.sil import report_from_archive
from link.codec import decode, encode
from link.messages import Event, EventKind, Telemetry
from link.topics import TopicMap

REPO = Path(__file__).resolve().parent.parent

MU_KM3_S2 = 398600.4418
"""Earth's gravitational parameter (physics.md, as docs/plant.md)."""
R_EARTH_KM = 6378.137


def _series(archive: Archive, channel: str) -> list[Telemetry]:
    return sorted((decode(r.payload, Telemetry).message for r in archive.messages([channel])), key=lambda m: m.t_s)


# ------------------------------------------------------------------------------------------ end to end

ORBITS, WARP = 0.15, 300.0


@pytest.fixture(scope="module")
def sil_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path, float]:
    """One short ``hil sil --json --report DIR`` run shared by the end-to-end tests: (JSON, dir, wall s)."""
    report_dir = tmp_path_factory.mktemp("sil") / "report"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "hil.cli", "sil", "--scenario", "nominal-550km", "--orbits", str(ORBITS),
         "--warp", str(WARP), "--json", "--report", str(report_dir)],
        capture_output=True, timeout=120, cwd=report_dir.parent,
    )
    wall = time.monotonic() - t0
    log = report_dir / "flightd.log"
    assert proc.returncode == 0, (proc.stderr.decode(errors="replace")[-3000:],
                                  log.read_text(errors="replace")[-3000:] if log.exists() else "")
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.strip()]
    assert len(lines) == 1, f"--json must print one JSON object, got {proc.stdout!r}"
    return json.loads(lines[0]), report_dir, wall


def test_sil_cli_report(sil_run: tuple[dict[str, object], Path, float]) -> None:
    report, report_dir, wall = sil_run
    assert wall < 60, f"hil sil --orbits {ORBITS} took {wall:.1f} s"
    assert isinstance(report["jobs_done"], int) and report["jobs_done"] > 0
    assert isinstance(report["jobs_submitted"], int) and report["jobs_done"] <= report["jobs_submitted"]
    min_soc = float(report["min_soc"])  # type: ignore[arg-type]
    assert 0.0 < min_soc <= 1.0
    max_temp = float(report["max_temp_c"])  # type: ignore[arg-type]
    assert -100.0 < max_temp < 85.0  # a healthy spacecraft in sunlight for a few minutes
    assert report["violation_s"] == 0  # SoC ~0.9 in sunlight, cool board: no limit is near
    mode_s = report["mode_s"]
    assert isinstance(mode_s, dict) and set(mode_s) == {"nominal", "throttled", "safe"}
    assert all(v >= 0 for v in mode_s.values()) and mode_s["nominal"] > 0
    # report.json is the same report; the plot is a real image
    assert json.loads((report_dir / "report.json").read_text()) == report
    png = report_dir / "sil.png"
    assert png.stat().st_size > 20_000
    image = mpimg.imread(png)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300 and image.shape[2] in (3, 4)
    assert float(np.std(image[..., :3])) > 0.02, "the plot is blank"


def test_sil_archive_telemetry(sil_run: tuple[dict[str, object], Path, float]) -> None:
    report, report_dir, _ = sil_run
    with Archive(report_dir / "telemetry.sqlite3") as archive:
        counts = archive.channels()
        power, thermal, compute = (_series(archive, ch) for ch in ("power", "thermal", "compute"))
    assert counts.get("tlm/power", 0) > 0 and counts.get("tlm/thermal", 0) > 0 and counts.get("tlm/compute", 0) > 0
    # Closed form: T = 2 pi sqrt(a^3 / mu) at 550 km; telemetry every max(1 s, 0.2 * warp) simulated s.
    period_s = 2 * math.pi * math.sqrt((R_EARTH_KM + 550.0) ** 3 / MU_KM3_S2)
    tlm_period = max(1.0, 0.2 * WARP)
    expected = math.floor(ORBITS * period_s / tlm_period + 1e-9)
    assert expected - 1 <= len(power) <= expected  # QoS 0 on a local broker: at most one lost
    assert [round(m.t_s / tlm_period, 6) % 1 for m in power] == [0.0] * len(power)
    assert float(report["sim_s"]) == pytest.approx(power[-1].t_s - power[0].t_s)  # type: ignore[arg-type]
    # the report's extremes are those of the archive
    assert float(report["min_soc"]) == pytest.approx(min(m.values["soc"] for m in power))  # type: ignore[arg-type]
    temps = [m.values[k] for m in thermal for k in ("board_c", "radiator_c")]
    assert float(report["max_temp_c"]) == pytest.approx(max(temps))  # type: ignore[arg-type]
    assert any(m.values.get("busy_cores", 0.0) > 0 for m in compute), "flightd never reported busy cores"


def test_sil_archives_the_host_boards_own_channel(sil_run: tuple[dict[str, object], Path, float]) -> None:
    """flightd's ``board`` channel (this machine's real probes) reaches the archive, and the report
    summarises it: busy cores from /proc/stat on every Linux, as often as the plant's telemetry."""
    report, report_dir, _ = sil_run
    with Archive(report_dir / "telemetry.sqlite3") as archive:
        board, power = _series(archive, "board"), _series(archive, "power")
    assert len(board) >= len(power) // 2, (len(board), len(power))
    busy = [m.values["busy_cores"] for m in board if "busy_cores" in m.values]
    assert busy and all(0.0 <= b <= (os.cpu_count() or 1) + 1e-6 for b in busy)
    assert report["board_samples"] == len(board)
    assert float(report["board_busy_cores"]) == pytest.approx(float(np.mean(busy)))  # type: ignore[arg-type]
    assert str(report["board"]).startswith(("linux ", "raspberry-pi ", "jetson ")), report["board"]


def test_sil_soc_trend_follows_compute_energy(sil_run: tuple[dict[str, object], Path, float]) -> None:
    """The watts flightd's work cost come out of the battery: the board draws idle + w_per_core * busy
    cores, the bus balance solar - shunt - load is what the battery takes, and the SoC moves with it."""
    report, report_dir, _ = sil_run
    board = load_scenario("nominal-550km").config.board
    with Archive(report_dir / "telemetry.sqlite3") as archive:
        power = _series(archive, "power")
    assert len(power) >= 5
    for m in power:
        v = m.values
        assert v["compute_w"] == pytest.approx(board.idle_w + board.w_per_core * v["busy_cores"], rel=1e-6)
        assert v["load_w"] == pytest.approx(v["bus_w"] + v["compute_w"], rel=1e-6)
        charge_w = v["solar_w"] - v.get("shunt_w", 0.0) - v["load_w"]  # W into the battery (bus balance)
        assert -v["battery_a"] * v["battery_v"] == pytest.approx(charge_w, rel=0.02, abs=0.5)
    # Work was done: the board drew more than idle on average, and the battery gained less than
    # the same spacecraft with an idle board could have taken (at most the charge limit).
    sim_s = power[-1].t_s - power[0].t_s
    idle_wh = board.idle_w * sim_s / 3600.0
    compute_wh = float(report["compute_energy_wh"])  # type: ignore[arg-type]
    assert compute_wh > idle_wh
    gained_wh = power[-1].values["battery_wh"] - power[0].values["battery_wh"]
    idle_board_gain_wh = sum(
        (b.t_s - a.t_s) * (a.values["solar_w"] - a.values["bus_w"] - board.idle_w) for a, b in itertools.pairwise(power)
    ) / 3600.0
    assert 0 < gained_wh < idle_board_gain_wh
    # In sunlight with the battery charging, stored energy (and SoC) rises sample to sample.
    for a, b in itertools.pairwise(power):
        if a.values["battery_a"] < 0 and b.values["battery_a"] < 0:
            assert b.values["battery_wh"] > a.values["battery_wh"]
            assert b.values["soc"] >= a.values["soc"]


# ------------------------------------------------------------------------------------------ arithmetic


def _archive_of(path: Path, messages: list[tuple[str, Telemetry | Event]]) -> Archive:
    topics = TopicMap("sat1")
    archive = Archive(path, writable=True)
    rows = []
    for i, (channel, msg) in enumerate(messages):
        topic = topics.events if channel == "events" else topics.telemetry(channel)
        rows.append(topic_row(topic, encode(msg), rx_utc=1000.0 + i))
    archive.append(rows)
    return archive


def _tlm(channel: str, t_s: float, **values: float) -> Telemetry:
    return Telemetry(sat="sat1", channel=channel, t_s=t_s, values=values)


def test_report_arithmetic_on_a_synthetic_archive(tmp_path: Path) -> None:
    """Hand-made telemetry (limits of nominal-550km: SoC floor 0.30, board 85 °C, radiator 70 °C);
    each sample stands for the time until the next one, the last for one more period."""
    scenario = load_scenario("nominal-550km")
    lim = scenario.limits
    assert (lim.soc_floor, lim.board_max_c, lim.radiator_max_c) == (0.30, 85.0, 70.0)
    power = [  # t, soc, compute_w: durations 10, 10, 10, 10, 10 (last: one period) -> 50 s
        (0.0, 0.90, 36.0), (10.0, 0.50, 72.0), (20.0, 0.25, 36.0), (30.0, 0.20, 0.0), (40.0, 0.35, 18.0),
    ]
    thermal = [  # t, board, radiator: durations 6, 24, 10, 10 (last = 30 - 20)
        (0.0, 80.0, 60.0), (6.0, 86.0, 71.0), (30.0, 90.0, 65.0), (40.0, 70.0, 72.0),
    ]
    compute = [  # t, mode_code: durations 5, 20, 15, 15 (last = 40 - 25)
        (0.0, 0), (5.0, 2), (25.0, 1), (40.0, 0),
    ]
    msgs: list[tuple[str, Telemetry | Event]] = []
    msgs += [("power", _tlm("power", t, soc=s, compute_w=w)) for t, s, w in power]
    msgs += [("thermal", _tlm("thermal", t, board_c=b, radiator_c=r)) for t, b, r in thermal]
    msgs += [("compute", _tlm("compute", t, mode_code=float(c), busy_cores=0.0)) for t, c in compute]
    msgs += [("events", Event(kind=EventKind.MODE, message=f"mode {m}", at_utc=0.0,
                              details={"mode": m, "t_s": t, "reasons": [f"r{t:g}"]}))
             for t, m in ((5.0, "safe"), (25.0, "throttled"), (40.0, "nominal"))]
    msgs.append(("events", Event(kind=EventKind.LIFECYCLE, message="flightd stopping", at_utc=0.0)))
    # telemetry received newest first on purpose: the report must order samples by mission time
    msgs = [m for m in msgs if m[0] != "events"][::-1] + [m for m in msgs if m[0] == "events"]
    archive = _archive_of(tmp_path / "a.sqlite3", msgs)

    r = report_from_archive(archive, scenario, jobs_submitted=7, jobs_done=5, wall_s=2.0, warp=25.0, orbits=0.01)

    assert r.sim_s == 40.0
    assert r.min_soc == 0.20
    assert r.max_board_c == 90.0 and r.max_radiator_c == 72.0 and r.max_temp_c == 90.0
    # SoC < 0.30 at t=20 (10 s) and t=30 (10 s)
    assert r.violations_s["soc_floor"] == pytest.approx(20.0)
    # board > 85 at t=6 (24 s) and t=30 (10 s)
    assert r.violations_s["board_ceiling"] == pytest.approx(34.0)
    # radiator > 70 at t=6 (24 s) and t=40 (one period = 10 s)
    assert r.violations_s["radiator_ceiling"] == pytest.approx(34.0)
    # seconds with any limit broken: [20, 40) u [6, 40) u [6, 30) u [40, 50) = [6, 50)
    assert r.violation_s == pytest.approx(44.0)
    assert r.mode_s == pytest.approx({"nominal": 20.0, "safe": 20.0, "throttled": 15.0})
    # (36 + 72 + 36 + 0 + 18) W * 10 s = 1620 J = 0.45 Wh
    assert r.compute_energy_wh == pytest.approx(0.45)
    assert [(c["t_s"], c["mode"]) for c in r.mode_changes] == [(5.0, "safe"), (25.0, "throttled"),
                                                               (40.0, "nominal")]
    assert r.mode_changes[0]["reasons"] == ["r5"]
    assert (r.jobs_submitted, r.jobs_done, r.wall_s, r.warp, r.orbits) == (7, 5, 2.0, 25.0, 0.01)
    archive.close()
