"""An overview picture of an archive: state of charge, temperatures, power, compute, job throughput,
the radiation environment with the soft errors counted (when the archive has them) and governor mode
over mission time, with eclipses shaded and, when given, the contact windows of a space link marked
(matplotlib, Agg backend). A line is broken where its samples stop for more than
:data:`GAP_PERIODS` of its usual spacing (out of contact, a dropout): a gap in the telemetry is drawn
as a gap, not bridged by a straight line. The board's own sensors (the ``board`` channel: temperature,
measured power, busy cores) join the temperature, power and compute panels where the archive has them.

The x axis is mission time ``t_s`` (from the telemetry). Messages that carry no ``t_s`` (job states)
are placed by their receive time, mapped onto mission time through the telemetry's (rx_utc, t_s)
pairs, which also holds under a plant simulator running faster than real time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from ground.tlm.archive import Archive
from link.codec import peek_header
from link.telemetry import (
    BITS_REPAIRED,
    BOARD,
    BOARD_C,
    BUS_W,
    BUSY_CORES,
    COMPUTE,
    COMPUTE_W,
    CONCURRENCY,
    FLUX,
    INJECTED_RUN_FAULTS,
    INJECTED_WEIGHT_BITS,
    JOBS_DONE,
    LOAD_W,
    MODE_CODE,
    MODE_CODES,
    ORBIT,
    POWER,
    POWER_W,
    QUEUED,
    RADIATION,
    RADIATOR_C,
    RUN_FAULTS_DETECTED,
    RUN_FAULTS_ESCAPED,
    RUNNING,
    SOC,
    SOFT_ERRORS,
    SOLAR_W,
    SUNLIT,
    TEMP_C,
    THERMAL,
    mode_from_code,
)

FloatArray = npt.NDArray[np.float64]

MODES = tuple(mode.value for mode in MODE_CODES)
"""Governor modes in code order (nominal, throttled, safe)."""
MODE_COLOURS = {"nominal": "#4caf50", "throttled": "#ff9800", "safe": "#e53935", "unknown": "#bdbdbd"}
ECLIPSE_COLOUR = "#37474f"
HIGH_FLUX_COLOUR = "#8e24aa"
UPSET_SERIES = (
    (INJECTED_WEIGHT_BITS, "weight bits injected", "#e53935", "-"),
    (BITS_REPAIRED, "weight bits corrected (scrub)", "#43a047", "--"),
    (INJECTED_RUN_FAULTS, "run faults injected", "#fb8c00", "-"),
    (RUN_FAULTS_DETECTED, "run faults detected (DMR/TMR)", "#1e88e5", "--"),
    (RUN_FAULTS_ESCAPED, "run faults escaped", "#000000", ":"),
)
"""The ``soft_errors`` counters the radiation panel draws (cumulative), with label, colour and style."""
CONTACT_COLOUR = "#0288d1"
GAP_PERIODS = 3.0
"""A line breaks where consecutive samples are more than this many median spacings apart."""
LEGEND: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.005, 1.0), "fontsize": 8, "frameon": False}
"""Legends sit right of their panel, never over the data."""
BIN_CHOICES_S = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)


@dataclass
class Series:
    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        t = np.asarray(self.t, dtype=float)
        v = np.asarray(self.v, dtype=float)
        order = np.argsort(t, kind="stable")
        return t[order], v[order]


@dataclass
class PlotData:
    """What the picture is drawn from, extracted from an archive (pure data, testable)."""

    tlm: dict[str, dict[str, Series]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Series)))
    rx_to_t: tuple[FloatArray, FloatArray] = (np.zeros(0), np.zeros(0))
    mode_events: list[tuple[float, str]] = field(default_factory=list)
    jobs_done_t: list[float] = field(default_factory=list)
    sats: list[str] = field(default_factory=list)

    def series(self, channel: str, name: str) -> tuple[FloatArray, FloatArray] | None:
        s = self.tlm.get(channel, {}).get(name)
        return s.arrays() if s is not None and s.t else None

    def mission_time(self, rx_utc: float) -> float:
        rx, t = self.rx_to_t
        if len(rx) == 0:
            return rx_utc
        if len(rx) == 1:
            return float(t[0] + (rx_utc - rx[0]))
        return float(np.interp(rx_utc, rx, t))


def _mode_of(doc: dict[str, object]) -> str | None:
    details = doc.get("details")
    if isinstance(details, dict):
        for key in ("mode", "to", "new_mode", "new"):
            value = details.get(key)
            if isinstance(value, str) and value in MODES:
                return value
    text = str(doc.get("message", "")).lower()
    # "throttled -> safe": the last mode named is the new one
    found = [(text.rfind(m), m) for m in MODES if m in text]
    return max(found)[1] if found else None


def extract(archive: Archive, sats: Sequence[str] | None = None) -> PlotData:
    """Telemetry series, mode changes and job completions of ``archive`` (optionally some satellites)."""
    data = PlotData(sats=list(sats) if sats else archive.sats())
    pairs: list[tuple[float, float]] = []
    pending_events: list[tuple[float, float | None, str]] = []
    pending_jobs: list[float] = []
    for rec in archive.messages(["tlm", "events", "jobs"], sats=sats):
        doc = peek_header(rec.payload)
        if doc is None:
            continue
        if rec.channel.startswith("tlm/"):
            values = doc.get("values")
            if rec.t_s is None or not isinstance(values, dict):
                continue
            pairs.append((rec.rx_utc, rec.t_s))
            channel = rec.channel[4:]
            for name, value in values.items():
                if isinstance(value, int | float):
                    s = data.tlm[channel][name]
                    s.t.append(rec.t_s)
                    s.v.append(float(value))
        elif rec.channel == "events" and doc.get("kind") == "mode":
            mode = _mode_of(doc)
            if mode is not None:
                pending_events.append((rec.rx_utc, rec.t_s, mode))
        elif rec.channel == "jobs" and doc.get("state") == "done" and not rec.retained:
            pending_jobs.append(rec.rx_utc)
    pairs.sort()
    if pairs:
        data.rx_to_t = (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    data.mode_events = sorted(
        (t_s if t_s is not None else data.mission_time(rx), mode) for rx, t_s, mode in pending_events
    )
    data.jobs_done_t = sorted(data.mission_time(rx) for rx in pending_jobs)
    return data


def spans(t: FloatArray, flag: npt.NDArray[np.bool_]) -> list[tuple[float, float]]:
    """(start, end) of the runs where ``flag`` is true; a run ends at the next sample's time."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for i in range(len(t)):
        if flag[i] and start is None:
            start = float(t[i])
        elif not flag[i] and start is not None:
            out.append((start, float(t[i])))
            start = None
    if start is not None:
        out.append((start, float(t[-1])))
    return out


def eclipses(data: PlotData) -> list[tuple[float, float]]:
    """Eclipse periods from the ``sunlit`` flag (power channel, else orbit channel)."""
    for channel in (POWER, ORBIT):
        s = data.series(channel, SUNLIT)
        if s is not None:
            return spans(s[0], s[1] < 0.5)
    return []


def mode_spans(data: PlotData, t_end: float) -> list[tuple[float, float, str]]:
    """(start, end, mode): from the compute channel's mode_code, else from mode events."""
    s = data.series(COMPUTE, MODE_CODE)
    changes: list[tuple[float, str]] = []
    if s is not None:
        last = None
        for t, code in zip(s[0], s[1], strict=True):
            known = mode_from_code(code)
            mode = known.value if known is not None else "unknown"
            if mode != last:
                changes.append((float(t), mode))
                last = mode
    else:
        changes = list(data.mode_events)
    out = []
    for i, (t, mode) in enumerate(changes):
        end = changes[i + 1][0] if i + 1 < len(changes) else t_end
        if end > t:
            out.append((t, end, mode))
    return out


def _time_scale(span_s: float) -> tuple[float, str]:
    if span_s > 3 * 3600:
        return 3600.0, "h"
    if span_s > 180:
        return 60.0, "min"
    return 1.0, "s"


def with_gaps(t: FloatArray, v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``t``, ``v`` with a NaN inserted wherever consecutive samples are more than :data:`GAP_PERIODS`
    median spacings apart, so that a plotted line breaks there."""
    if len(t) < 3:
        return t, v
    dt = np.diff(t)
    positive = dt[dt > 0]
    if not len(positive):
        return t, v
    cut = np.flatnonzero(dt > GAP_PERIODS * float(np.median(positive))) + 1
    return np.insert(t, cut, np.nan), np.insert(v, cut, np.nan)


def _lines(ax: Axes, data: PlotData, specs: Sequence[tuple[str, str, str, float]], scale: float) -> bool:
    drawn = False
    for channel, name, label, factor in specs:
        s = data.series(channel, name)
        if s is None:
            continue
        t, v = with_gaps(*s)
        ax.plot(t / scale, v * factor, label=label, linewidth=1.3)
        drawn = True
    if drawn:
        ax.legend(**LEGEND)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")
    return drawn


def plot(archive: Archive, out: str | Path, *, sats: Sequence[str] | None = None, title: str | None = None,
         contacts: Sequence[tuple[float, float]] | None = None, span: tuple[float, float] | None = None) -> Path:
    """Write the overview PNG of ``archive`` to ``out``; returns its path. ``contacts``: (start, end)
    mission seconds of the space link's contact windows, marked on every panel; ``span``: the mission
    time shown (default: what the archive holds)."""
    data = extract(archive, sats)
    all_t = [t for ch in data.tlm.values() for s in ch.values() for t in (s.t[:1] + s.t[-1:])]
    all_t += data.jobs_done_t + [t for t, _ in data.mode_events]
    t0, t1 = span or ((min(all_t), max(all_t)) if all_t else (0.0, 1.0))
    if t1 <= t0:
        t1 = t0 + 1.0
    scale, unit = _time_scale(t1 - t0)

    radiation = data.series(RADIATION, FLUX) is not None or data.series(SOFT_ERRORS, INJECTED_WEIGHT_BITS) is not None
    ratios = [2, 2, 2.4, 2, 1.6, *([2.2] if radiation else []), 0.55]
    fig, axes = plt.subplots(len(ratios), 1, figsize=(14, 14 + 2.2 * radiation), sharex=True,
                             gridspec_kw={"height_ratios": ratios})
    ax_soc, ax_temp, ax_pow, ax_cpu, ax_jobs = axes[:5]
    ax_mode = axes[-1]
    if radiation:
        _radiation_panel(axes[5], data, scale)

    _lines(ax_soc, data, [(POWER, SOC, "state of charge", 100.0)], scale)
    ax_soc.set_ylabel("SoC (%)")
    ax_soc.set_ylim(0, 105)

    _lines(
        ax_temp,
        data,
        [(THERMAL, BOARD_C, "board", 1.0), (THERMAL, RADIATOR_C, "radiator", 1.0),
         (BOARD, TEMP_C, "board (own sensor)", 1.0)],
        scale,
    )
    ax_temp.set_ylabel("temperature (°C)")

    _lines(
        ax_pow,
        data,
        [
            (POWER, SOLAR_W, "solar", 1.0),
            (POWER, LOAD_W, "total load", 1.0),
            (POWER, COMPUTE_W, "compute", 1.0),
            (POWER, BUS_W, "bus", 1.0),
            (BOARD, POWER_W, "board (measured)", 1.0),
        ],
        scale,
    )
    ax_pow.set_ylabel("power (W)")

    _lines(
        ax_cpu,
        data,
        [
            (COMPUTE, BUSY_CORES, "busy cores", 1.0),
            (COMPUTE, RUNNING, "running", 1.0),
            (COMPUTE, QUEUED, "queued", 1.0),
            (COMPUTE, CONCURRENCY, "concurrency", 1.0),
            (BOARD, BUSY_CORES, "board busy cores (/proc/stat)", 1.0),
        ],
        scale,
    )
    ax_cpu.set_ylabel("compute")

    # job throughput: completions per bin (job-state events, else the compute channel's jobs_done)
    width = next((w for w in BIN_CHOICES_S if (t1 - t0) / w <= 80), (t1 - t0) / 80)
    edges = np.arange(t0, t1 + width, width)
    done_t = np.asarray(data.jobs_done_t)
    counts: FloatArray | None = None
    if len(done_t):
        counts = np.histogram(done_t, bins=edges)[0].astype(float)
    else:
        jd = data.series(COMPUTE, JOBS_DONE)
        if jd is not None and len(jd[0]) > 1:
            cumulative = np.interp(edges, jd[0], jd[1])
            counts = np.clip(np.diff(cumulative), 0, None)
    if counts is not None:
        rate = counts / (width / 60.0)
        ax_jobs.bar(
            edges[:-1] / scale,
            rate,
            width=width / scale,
            align="edge",
            color="#5c6bc0",
            label=f"jobs done\n({width / 60:g} min bins)",
        )
        ax_jobs.legend(**LEGEND)
    else:
        ax_jobs.text(0.5, 0.5, "no data", transform=ax_jobs.transAxes, ha="center", va="center", color="grey")
    ax_jobs.set_ylabel("jobs / min")

    bands = mode_spans(data, t1)
    for start, end, mode in bands:
        ax_mode.axvspan(start / scale, end / scale, color=MODE_COLOURS.get(mode, MODE_COLOURS["unknown"]), lw=0)
    ax_mode.set_yticks([])
    ax_mode.set_ylabel("mode", rotation=0, ha="right", va="center")
    if bands:
        present = [m for m in (*MODES, "unknown") if any(b[2] == m for b in bands)]
        ax_mode.legend(
            handles=[Patch(color=MODE_COLOURS[m], label=m) for m in present],
            **{**LEGEND, "bbox_to_anchor": (1.005, 1.4)},
        )
    else:
        ax_mode.text(0.5, 0.5, "no mode data", transform=ax_mode.transAxes, ha="center", va="center", color="grey")

    shade = eclipses(data)
    windows = [(a, min(b, t1)) for a, b in (contacts or []) if a < t1 and b > t0]
    for ax in axes[:-1]:
        for start, end in shade:
            ax.axvspan(start / scale, end / scale, color=ECLIPSE_COLOUR, alpha=0.13, lw=0)
        for start, end in windows:  # a band along the top of the panel: in contact with the ground
            ax.axvspan(start / scale, end / scale, ymin=0.94, ymax=1.0, color=CONTACT_COLOUR, alpha=0.8, lw=0)
        ax.grid(True, alpha=0.3)
    extra = [Patch(color=ECLIPSE_COLOUR, alpha=0.25, label="eclipse")] if shade else []
    if contacts is not None:
        extra.append(Patch(color=CONTACT_COLOUR, alpha=0.8, label=f"in contact ({len(windows)})"))
    if extra:
        ax_soc.legend(handles=[*ax_soc.get_legend_handles_labels()[0], *extra], **LEGEND)
    ax_mode.set_xlim(t0 / scale, t1 / scale)
    ax_mode.set_xlabel(f"mission time ({unit})")
    sats_text = ", ".join(data.sats) if data.sats else "no satellite"
    return _save(fig, out, title or f"{Path(archive.path).name} — {sats_text}")


def _save(fig: Any, out: str | Path, title: str) -> Path:
    """Title, lay out, write (110 dpi) and close ``fig``; the path written."""
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _known_eclipses(data: PlotData) -> list[tuple[float, float]]:
    """Eclipse spans from the ``sunlit`` flag, cut where telemetry is missing (a gap of more than three
    median sample spacings: a dropout must not read as one long eclipse)."""
    s = data.series(POWER, SUNLIT)
    if s is None or len(s[0]) < 2:
        return []
    t, flag = s
    step = float(np.median(np.diff(t)))
    cuts = np.flatnonzero(np.diff(t) > 3 * step) + 1
    out: list[tuple[float, float]] = []
    for seg_t, seg_flag in zip(np.split(t, cuts), np.split(flag, cuts), strict=True):
        out += spans(seg_t, seg_flag < 0.5)
    return out


def _radiation_panel(ax: Axes, data: PlotData, scale: float) -> None:
    """The flux proxy (log scale; flux > 1 shaded) and, on a second axis, the cumulative soft errors."""
    flux = data.series(RADIATION, FLUX)
    if flux is not None:
        ax.plot(flux[0] / scale, np.maximum(flux[1], 1e-3), color=HIGH_FLUX_COLOUR, linewidth=1.0, label="flux proxy")
        ax.set_yscale("log")
        for start, end in spans(flux[0], flux[1] > 1.0):
            ax.axvspan(start / scale, end / scale, color=HIGH_FLUX_COLOUR, alpha=0.10, lw=0)
        ax.axhline(1.0, color=HIGH_FLUX_COLOUR, linewidth=0.6, linestyle=":")
    ax.set_ylabel("flux (1 = ref.)")
    counts = ax.twinx()
    drawn = False
    for key, label, colour, style in UPSET_SERIES:
        s = data.series(SOFT_ERRORS, key)
        if s is not None and np.any(s[1] > 0):
            counts.step(s[0] / scale, s[1], where="post", color=colour, linestyle=style, linewidth=1.3, label=label)
            drawn = True
    counts.set_ylabel("upsets (cumulative)")
    handles = ax.get_legend_handles_labels()[0] + counts.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles=handles, **{**LEGEND, "bbox_to_anchor": (1.06, 1.0)})
    if flux is None and not drawn:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")


def plot_fleet(archive: Archive, out: str | Path, sats: Sequence[str] | None = None, *,
               title: str | None = None) -> Path:
    """Write a fleet's overview PNG to ``out``: per satellite (one colour each) its state of charge
    with its eclipses, its jobs done (the ``compute`` channel's ``jobs_done`` counter) and its governor
    mode as a band, over each satellite's own mission time. Returns the path."""
    names = list(sats) if sats else archive.sats()
    per_sat = {sat: extract(archive, [sat]) for sat in names}
    ends = [t for d in per_sat.values() for ch in d.tlm.values() for s in ch.values() for t in (s.t[:1] + s.t[-1:])]
    t0, t1 = (min(ends), max(ends)) if ends else (0.0, 1.0)
    t1 = max(t1, t0 + 1.0)
    scale, unit = _time_scale(t1 - t0)
    fig, (ax_soc, ax_jobs, ax_mode) = plt.subplots(
        3, 1, figsize=(14, 9 + 0.25 * len(names)), sharex=True,
        gridspec_kw={"height_ratios": [3, 2.4, 0.35 * max(len(names), 1) + 0.6]})
    colours = plt.get_cmap("tab10")
    for i, (sat, data) in enumerate(per_sat.items()):
        colour = colours(i % 10)
        soc = data.series(POWER, SOC)
        if soc is not None:
            ax_soc.plot(soc[0] / scale, soc[1] * 100.0, color=colour, lw=1.3, label=sat)
            for start, end in _known_eclipses(data):
                ax_soc.plot([start / scale, end / scale], [1.5 + 1.2 * i] * 2, color=colour, lw=3,
                            solid_capstyle="butt")
        done = data.series(COMPUTE, JOBS_DONE)
        if done is not None:
            ax_jobs.step(done[0] / scale, done[1], where="post", color=colour, lw=1.3, label=sat)
        for start, end, mode in mode_spans(data, t1):
            ax_mode.broken_barh([(start / scale, (end - start) / scale)], (i - 0.4, 0.8),
                                color=MODE_COLOURS.get(mode, MODE_COLOURS["unknown"]), lw=0)
    ax_soc.set_ylabel("SoC (%)")
    ax_soc.set_ylim(0, 105)
    ax_jobs.set_ylabel("jobs done")
    for ax, heading in ((ax_soc, "bars: eclipses"), (ax_jobs, None)):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title=heading, title_fontsize=8, **LEGEND)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax_mode.set_yticks(range(len(names)), names)
    ax_mode.set_ylim(-0.6, len(names) - 0.4)
    ax_mode.invert_yaxis()
    ax_mode.legend(handles=[Patch(color=MODE_COLOURS[m], label=m) for m in MODES], **LEGEND)
    ax_mode.set_xlim(t0 / scale, t1 / scale)
    ax_mode.set_xlabel(f"mission time ({unit}), each satellite's own")
    return _save(fig, out, title or f"{Path(archive.path).name}: {len(names)} satellites")
