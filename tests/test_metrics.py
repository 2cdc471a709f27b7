"""flightd's Prometheus metrics: the definitions (flight/metrics.py), the endpoint, and a real
Prometheus scraping a real flightd and answering through its query API."""

from __future__ import annotations

import json
import math
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flight import __version__
from flight.board import BoardSample
from flight.metrics import FlightMetrics
from flight.settings import FlightSettings
from ground.client import GroundClient
from hil.embedded_broker import free_port
from hil.mosquitto_broker import MosquittoBroker
from link.messages import Mode
from tests.prometheus_server import PrometheusServer
from tests.support import FlightdProcess, copy_bundled, wait_online, wait_until

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "orbitd.json"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def test_metrics_are_off_by_default() -> None:
    assert FlightSettings().metrics.enabled is False
    assert FlightSettings().metrics.host == "127.0.0.1"


def test_definitions_fed_and_served() -> None:
    m = FlightMetrics("sat9", "9.9.9")
    m.control_cycle(mode=Mode.THROTTLED, budget_w=42.5, queued=3, running=1, slip_s=0.004, overruns=2)
    m.control_cycle(mode=Mode.THROTTLED, budget_w=42.5, queued=3, running=1, slip_s=0.0001, overruns=2)
    m.inference("digits-int8", 0.002)
    m.inference("digits-int8", 0.003)
    m.inference("tile-fp32", 1.5)
    m.journal_commit(4, 0.0012)
    m.job_counts({"done": 7, "queued": 3})
    m.board(power_w=6.5)
    m.board(temperature_c=61.0)
    port = m.serve("127.0.0.1", 0)
    try:
        values = _samples(_scrape(port))
    finally:
        m.close()
    assert values[("orbitd_info", (("sat", "sat9"), ("version", "9.9.9")))] == 1
    assert values[("orbitd_mode", (("orbitd_mode", "throttled"),))] == 1
    assert values[("orbitd_mode", (("orbitd_mode", "safe"),))] == 0
    assert values[("orbitd_power_budget_watts", ())] == 42.5
    assert values[("orbitd_queue_depth", ())] == 3 and values[("orbitd_jobs_running", ())] == 1
    assert values[("orbitd_jobs", (("state", "done"),))] == 7
    assert values[("orbitd_jobs", (("state", "failed"),))] == 0
    assert values[("orbitd_inference_duration_seconds_count", (("model", "digits-int8"),))] == 2
    assert values[("orbitd_inference_duration_seconds_sum", (("model", "tile-fp32"),))] == 1.5
    assert values[("orbitd_inference_duration_seconds_bucket", (("le", "0.0025"), ("model", "digits-int8")))] == 1
    assert values[("orbitd_control_cycle_slip_seconds_count", ())] == 2
    assert values[("orbitd_control_cycle_overruns_total", ())] == 2
    assert values[("orbitd_journal_commit_duration_seconds_count", ())] == 1
    assert values[("orbitd_journal_writes_total", ())] == 4
    assert values[("orbitd_board_power_watts", ())] == 6.5
    assert values[("orbitd_board_temperature_celsius", ())] == 61.0


def test_a_board_probe_takes_over_the_board_metrics_from_telemetry() -> None:
    """Telemetry feeds board power and temperature until the board's own probe measures them; a probe
    without a power sensor (a Raspberry Pi without a PMIC reading) leaves power to telemetry."""
    m = FlightMetrics("sat1", "0")
    m.board(power_w=30.0, temperature_c=40.0)
    m.board_probe(BoardSample(t_s=1.0, temp_c=55.5))
    m.board(power_w=31.0, temperature_c=41.0)
    values = _samples(generate_latest(m.registry).decode())
    assert values[("orbitd_board_temperature_celsius", ())] == 55.5
    assert values[("orbitd_board_power_watts", ())] == 31.0
    m.board_probe(BoardSample(t_s=2.0, temp_c=56.0, power_w=7.25))
    m.board(power_w=32.0, temperature_c=42.0)
    values = _samples(generate_latest(m.registry).decode())
    assert values[("orbitd_board_power_watts", ())] == 7.25
    assert values[("orbitd_board_temperature_celsius", ())] == 56.0


def test_unknown_budget_and_board_are_nan_not_zero() -> None:
    m = FlightMetrics("sat1", "0")
    m.control_cycle(mode=Mode.NOMINAL, budget_w=None, queued=0, running=0, slip_s=0.0, overruns=0)
    values = _samples(generate_latest(m.registry).decode())
    assert math.isnan(values[("orbitd_power_budget_watts", ())])
    assert math.isnan(values[("orbitd_board_temperature_celsius", ())])


def test_dashboard_queries_only_defined_metrics() -> None:
    """The Grafana dashboard in deploy/ plots metrics this module defines, nothing else."""
    m = FlightMetrics("sat1", "0")
    m.inference("x", 0.1)
    m.sequence_fired("s")  # a labelled metric shows once it has a child
    defined = {s[0] for s in _samples(generate_latest(m.registry).decode())}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    for expr in exprs:
        names = set(re.findall(r"\borbitd_[a-z_]+", expr))
        assert names and names <= defined, (expr, names - defined)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return copy_bundled(tmp_path / "models", "digits-int8")


async def test_prometheus_scrapes_flightd(mosquitto: MosquittoBroker, tmp_path: Path, models_dir: Path) -> None:
    port = free_port()
    proc = FlightdProcess(mosquitto.url, tmp_path / "data", models_dir,
                          env={"ORBITD_METRICS__ENABLED": "true", "ORBITD_METRICS__PORT": str(port),
                               "ORBITD_LINK__HEARTBEAT_S": "0.5"})
    proc.start()
    prom = PrometheusServer(tmp_path / "prometheus", {"flightd": [f"127.0.0.1:{port}"]}, scrape_interval_s=0.5)
    try:
        await wait_online(mosquitto.url)
        async with GroundClient(mosquitto.url, "sat1") as ground:
            for _ in range(3):
                job = await ground.submit("digits-int8", {"image": np.zeros((1, 1, 8, 8), np.float32)})
                await ground.wait_result(job.job_id)
        prom.start()

        def value(promql: str) -> float | None:
            result = prom.query(promql)
            return float(result[0]["value"][1]) if result else None

        await wait_until(lambda: value('up{job="flightd"}') == 1.0, 30, "Prometheus to scrape flightd")
        await wait_until(lambda: value('orbitd_jobs{job="flightd",state="done"}') == 3.0, 30,
                         "3 done jobs through Prometheus")
        assert value('orbitd_inference_duration_seconds_count{model="digits-int8"}') == 3.0
        assert value('orbitd_info{sat="sat1"}') == 1.0
        versions = [r["metric"]["version"] for r in prom.query("orbitd_info")]
        assert versions == [__version__]
        assert value('orbitd_mode{orbitd_mode="nominal"}') == 1.0
        assert (value("orbitd_journal_writes_total") or 0) >= 6  # 3 accepted + 3 completed, at least
        assert (value("orbitd_control_cycle_slip_seconds_count") or 0) > 0
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nflightd log:\n{proc.log()[-3000:]}\nprometheus log:\n{prom.log()}") from None
    finally:
        prom.stop()
        proc.stop()
