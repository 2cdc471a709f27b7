"""ground tlm plot: the overview PNG of a synthetic three-orbit archive, and the data it is drawn from."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ground.tlm.archive import Archive, topic_row
from ground.tlm.cli import main
from ground.tlm.plot import CONTACT_COLOUR, eclipses, extract, mode_spans, plot, with_gaps
from link.codec import encode
from link.messages import Event, EventKind, JobState, JobStateEvent, Telemetry
from link.topics import TopicMap

PERIOD_S = 5700.0
ECLIPSE_S = 2100.0  # the last 2100 s of each orbit are in shadow
STEP_S = 10.0
ORBITS = 3


def sunlit(t: float) -> bool:
    return (t % PERIOD_S) < PERIOD_S - ECLIPSE_S


def mode_at(t: float) -> int:
    """0 nominal, 1 throttled in the second half of each eclipse, 2 safe during orbit 3's eclipse."""
    phase = t % PERIOD_S
    if t >= 2 * PERIOD_S + PERIOD_S - ECLIPSE_S:
        return 2
    return 1 if phase > PERIOD_S - ECLIPSE_S / 2 else 0


def build(path: Path, sat: str = "sat1", with_mode_code: bool = True) -> tuple[int, list[float]]:
    """A synthetic archive: power/thermal/orbit/compute every 10 s, a job done every 60 s while
    nominal, mode events; rx_utc runs 10x faster than mission time. Returns (mode changes, mission
    times at which the job-done messages were received)."""
    tm = TopicMap(sat)
    rows = []
    rx0 = 1_750_000_000.0
    soc = 0.9
    changes = 0
    jobs: list[float] = []
    last_mode = 0
    n = int(ORBITS * PERIOD_S / STEP_S)
    for i in range(n):
        t = i * STEP_S
        rx = rx0 + t / 10.0
        lit = sunlit(t)
        mode = mode_at(t)
        compute_w = (150.0, 70.0, 5.0)[mode]
        solar_w = 420.0 if lit else 0.0
        load_w = 120.0 + compute_w
        soc = min(1.0, max(0.0, soc + (solar_w - load_w) * STEP_S / 3600.0 / 1000.0))
        board_c = 25.0 + 0.15 * compute_w + 10 * math.sin(2 * math.pi * t / PERIOD_S)
        samples = {
            "power": {"soc": soc, "solar_w": solar_w, "load_w": load_w, "bus_w": 120.0,
                      "compute_w": compute_w, "sunlit": float(lit)},
            "thermal": {"board_c": board_c, "radiator_c": board_c - 12.0},
            "orbit": {"sunlit": float(lit), "beta_deg": 20.0, "period_s": PERIOD_S},
            "compute": {"busy_cores": (1.8, 0.8, 0.0)[mode], "running": (2, 1, 0)[mode], "queued": 3,
                        "mode_code": float(mode), "concurrency": (2, 1, 0)[mode]},
        }  # fmt: skip
        if not with_mode_code:
            del samples["compute"]["mode_code"]
        for channel, values in samples.items():
            topic = tm.telemetry(channel)
            payload = encode(Telemetry(sat=sat, channel=channel, t_s=t, values=values))
            rows.append(topic_row(topic, payload, rx))
        if mode != last_mode:
            changes += 1
            ev = Event(kind=EventKind.MODE, message=f"mode {('nominal', 'throttled', 'safe')[last_mode]} -> "
                       f"{('nominal', 'throttled', 'safe')[mode]}", at_utc=rx, t_s=t,
                       details={"mode": ("nominal", "throttled", "safe")[mode]})  # fmt: skip
            rows.append(topic_row(tm.events, encode(ev), rx, 1))
            last_mode = mode
        if mode == 0 and i % 6 == 0:
            jobs.append(t + 0.01)  # received 1 ms after the sample = 10 ms of mission time
            job = JobStateEvent(job_id=f"j{i}", state=JobState.DONE, at_utc=rx)
            rows.append(topic_row(tm.job_state(f"j{i}"), encode(job), rx + 0.001, 1))
    with Archive(path, writable=True) as archive:
        archive.append(rows)
    return changes, jobs


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_data_matches_the_synthetic_orbit(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    changes, jobs = build(path)
    with Archive(path) as archive:
        data = extract(archive)
    # eclipses: one per orbit, each ECLIPSE_S long (to the sampling step)
    shade = eclipses(data)
    assert len(shade) == ORBITS
    for k, (start, end) in enumerate(shade):
        assert abs(start - (k * PERIOD_S + PERIOD_S - ECLIPSE_S)) <= STEP_S
        assert abs((end - start) - ECLIPSE_S) <= STEP_S
    # mode bands: the transitions of mode_at, nothing else
    bands = mode_spans(data, ORBITS * PERIOD_S)
    assert len(bands) == changes + 1
    assert [b[2] for b in bands[:3]] == ["nominal", "throttled", "nominal"]
    assert bands[-1][2] == "safe"
    assert abs(bands[-1][0] - (2 * PERIOD_S + PERIOD_S - ECLIPSE_S)) <= STEP_S
    # job completions placed on mission time via the rx -> t_s mapping (rx runs 10x mission time)
    assert np.allclose(data.jobs_done_t, jobs, atol=1e-4)


def test_mode_bands_fall_back_to_mode_events(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    changes, _ = build(path, with_mode_code=False)
    with Archive(path) as archive:
        data = extract(archive)
    bands = mode_spans(data, ORBITS * PERIOD_S)
    assert len(bands) == changes  # no band before the first event
    assert bands[-1][2] == "safe"


def test_plot_writes_a_nontrivial_png(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    build(path)
    png = tmp_path / "overview.png"
    assert main(["tlm", "plot", str(path), "-o", str(png)]) == 0
    width, height = png_size(png)
    assert width >= 1000 and height >= 1000
    # a real picture: many distinct colours, compresses far less than a blank canvas
    raw = png.read_bytes()
    assert len(raw) > 60_000
    blank = zlib.compress(b"\xff" * (width * height * 4))
    assert len(raw) > 5 * len(blank)


def test_lines_break_at_gaps_in_the_telemetry() -> None:
    t = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0])  # out of contact from 3 s to 10 s
    v = t * 2.0
    tg, vg = with_gaps(t, v)
    assert np.isnan(tg[4]) and np.isnan(vg[4])
    assert list(tg[:4]) == [0.0, 1.0, 2.0, 3.0] and list(tg[5:]) == [10.0, 11.0, 12.0]
    regular = np.arange(10.0)
    assert len(with_gaps(regular, regular)[0]) == 10  # no gap, no break


def contact_columns(png: Path) -> np.ndarray:
    """Pixel columns of ``png`` holding the contact band's colour (CONTACT_COLOUR at alpha 0.8 on white)."""
    from matplotlib import colors, image

    rgb = image.imread(png)[..., :3]
    band = 0.8 * np.array(colors.to_rgb(CONTACT_COLOUR)) + 0.2
    hit = np.all(np.abs(rgb - band) < 0.02, axis=-1)
    return np.flatnonzero(hit.sum(axis=0) >= 10)  # a column of the band on the panels, not a legend swatch


def test_contact_windows_are_marked_where_they_are(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    build(path)
    span = (0.0, ORBITS * PERIOD_S)
    with Archive(path) as archive:
        plain = plot(archive, tmp_path / "plain.png", span=span)
        marked = plot(archive, tmp_path / "marked.png", span=span,
                      contacts=[(1000.0, 1600.0), (7000.0, 7600.0)])  # in sunlight: no eclipse shade over them
    assert len(contact_columns(plain)) == 0
    cols = contact_columns(marked)
    # two bands, each a 600 s window of the 17,100 s shown: about 3.5 % of the axes' width apiece
    groups = np.split(cols, np.flatnonzero(np.diff(cols) > 5) + 1)  # a curve may cross a band
    assert len(groups) == 2, [(g[0], g[-1]) for g in groups]
    first, second = (float(g.mean()) for g in groups)
    widths = [int(g[-1] - g[0]) + 1 for g in groups]
    axes_px = (second - first) / (6000.0 / span[1])  # the bands' centres are 6000 s apart
    assert abs(widths[0] - widths[1]) <= 2
    assert abs(widths[0] / axes_px - 600.0 / span[1]) < 0.01
