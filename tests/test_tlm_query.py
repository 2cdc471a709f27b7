"""ground tlm query: channel and time-range selection, JSON Lines and CSV output."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ground.tlm.archive import Archive, topic_row
from ground.tlm.cli import main
from ground.tlm.query import parse_time
from link.codec import encode
from link.messages import JobState, JobStateEvent, Telemetry
from link.topics import TopicMap

RX0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def build(path: Path) -> list[dict[str, Any]]:
    """Power and thermal telemetry at t_s = 0, 10, ..., 990 received 1 s apart per sample pair,
    job states every 100 s, two satellites. Returns what was written, independently of the archive."""
    rows = []
    truth: list[dict[str, Any]] = []
    for sat in ("sat1", "sat2"):
        tm = TopicMap(sat)
        for i in range(100):
            t_s = 10.0 * i
            rx = RX0 + i
            for ch, values in (("power", {"soc": i / 100, "solar_w": 3.0 * i}), ("thermal", {"board_c": 20 + i / 2})):
                payload = encode(Telemetry(sat=sat, channel=ch, t_s=t_s, values=values))
                rows.append(topic_row(tm.telemetry(ch), payload, rx))
                truth.append({"sat": sat, "channel": f"tlm/{ch}", "t_s": t_s, "rx": rx, "values": values})
            if i % 10 == 0:
                job = JobStateEvent(job_id=f"j{i}", state=JobState.DONE, at_utc=rx)
                rows.append(topic_row(tm.job_state(f"j{i}"), encode(job), rx, 1))
                truth.append({"sat": sat, "channel": "jobs", "t_s": None, "rx": rx, "job_id": f"j{i}"})
    with Archive(path, writable=True) as archive:
        archive.append(rows)
    return truth


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_json_by_channel_and_mission_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.db"
    truth = build(path)
    out = run(capsys, "tlm", "query", str(path), "--channel", "tlm/power", "--from", "95", "--to", "300", "--json")
    got = [json.loads(line) for line in out.splitlines()]
    want = [r for r in truth if r["channel"] == "tlm/power" and 95 <= r["t_s"] <= 300]
    assert len(got) == len(want) == 2 * 21  # t_s 100..300, both satellites
    assert [(g["sat"], g["t_s"]) for g in got] == [(w["sat"], w["t_s"]) for w in want]
    assert [g["message"]["values"] for g in got] == [w["values"] for w in want]
    assert all(g["topic"] == f"orbitd/v1/{g['sat']}/tlm/power" for g in got)


def test_csv_by_utc_range_and_satellite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.db"
    truth = build(path)
    out = run(
        capsys, "tlm", "query", str(path), "--sat", "sat2", "--channel", "thermal", "--channel", "jobs",
        "--from", "2025-06-01T12:00:30Z", "--to", "2025-06-01T12:00:59", "--csv",
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    want = [
        r for r in truth
        if r["sat"] == "sat2" and r["channel"] in ("tlm/thermal", "jobs") and RX0 + 30 <= r["rx"] <= RX0 + 59
    ]  # fmt: skip
    assert len(rows) == len(want) == 30 + 3
    assert [r["channel"] for r in rows] == [w["channel"] for w in want]
    for row, w in zip(rows, want, strict=True):
        assert float(row["rx_utc"]) == pytest.approx(w["rx"])
        if w["channel"] == "tlm/thermal":
            assert float(row["board_c"]) == pytest.approx(w["values"]["board_c"])
            assert row["job_id"] == ""
        else:
            assert row["job_id"] == w["job_id"] and row["state"] == "done" and row["t_s"] == ""


def test_numeric_bounds_never_match_messages_without_mission_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.db"
    build(path)
    assert run(capsys, "tlm", "query", str(path), "--channel", "jobs", "--from", "0") == ""
    assert len(run(capsys, "tlm", "query", str(path), "--channel", "jobs").splitlines()) == 20


def test_parse_time() -> None:
    assert parse_time("12.5").kind == "t_s" and parse_time("12.5").value == 12.5
    naive, zoned = parse_time("2025-06-01T12:00:00"), parse_time("2025-06-01T14:00:00+02:00")
    assert naive.kind == zoned.kind == "utc" and naive.value == zoned.value == RX0
    with pytest.raises(ValueError, match="neither"):
        parse_time("yesterday")


def test_missing_archive_is_an_error(tmp_path: Path) -> None:
    assert main(["tlm", "query", str(tmp_path / "nope.db"), "--channel", "status"]) == 1
    assert not (tmp_path / "nope.db").exists()


def test_mounted_under_a_parent_with_a_default_sat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mounted like the ``ground`` command (global --sat defaulting to sat1, async handlers): query
    shows every satellite unless its own --sat names one."""
    import argparse
    import asyncio

    from ground.tlm.cli import add_tlm_parser

    path = tmp_path / "a.db"
    build(path)
    parent = argparse.ArgumentParser()
    parent.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parent.add_argument("--sat", default="sat1")
    add_tlm_parser(parent.add_subparsers(dest="command", required=True))
    args = parent.parse_args(["tlm", "query", str(path), "--channel", "power", "--from", "0", "--to", "0"])
    assert args.sat == "sat1" and asyncio.run(args.handler(args)) == 0
    assert sorted(json.loads(line)["sat"] for line in capsys.readouterr().out.splitlines()) == ["sat1", "sat2"]
    args = parent.parse_args(
        ["--sat", "x", "tlm", "query", str(path), "--sat", "sat2", "--channel", "power", "--to", "0"]
    )
    assert asyncio.run(args.handler(args)) == 0
    assert [json.loads(line)["sat"] for line in capsys.readouterr().out.splitlines()] == ["sat2"]
