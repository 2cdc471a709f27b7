"""flightd (a real process) on directory trees laid out as on real boards (``board.root``): it says
what it found in its status, publishes the ``board`` channel, counts a job's energy from the
INA3221's measured power, and steers the cpufreq ceiling with the governor's mode on a Raspberry Pi
whose firmware reports throttling."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ground.client import GroundClient
from hil.embedded_broker import free_port
from hil.mosquitto_broker import MosquittoBroker
from link.codec import decode
from link.messages import Event, EventKind, Mode, Telemetry
from link.telemetry import BOARD, POWER_W, TEMP_C, THROTTLED
from tests.board_trees import orin_nano_tree, pi5_tree
from tests.support import build_slow_model, running_flightd, wait_until

VDD_IN = "sys/devices/platform/bus@0/c240000.i2c/i2c-1/1-0040/hwmon/hwmon1"
"""The Orin Nano tree's INA3221 hwmon directory (tests/board_trees.py); channel 1 is VDD_IN, the
module's input power, which is the board's power there."""

IDLE_W = 5.0


def set_vdd_in(root: Path, millivolts: int, milliamps: int) -> None:
    (root / VDD_IN / "in1_input").write_text(f"{millivolts}\n")
    (root / VDD_IN / "curr1_input").write_text(f"{milliamps}\n")


def flightd_config(path: Path, root: Path, governor: str, metrics_port: int | None = None) -> Path:
    """flightd's TOML: probes on ``root``, sampled every 0.2 s (power every 0.05 s during a job);
    Prometheus metrics on ``metrics_port`` where given."""
    metrics = f"[metrics]\nenabled = true\nport = {metrics_port}\n\n" if metrics_port is not None else ""
    path.write_text(
        f'[board]\nroot = "{root}"\nperiod_s = 0.2\nenergy_period_s = 0.05\nidle_w = {IDLE_W}\n\n'
        + metrics + governor
    )
    return path


def board_gauges(port: int) -> tuple[float, float]:
    """(``orbitd_board_power_watts``, ``orbitd_board_temperature_celsius``) scraped from flightd."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    values = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    return values["orbitd_board_power_watts"], values["orbitd_board_temperature_celsius"]


BOARD_ONLY_GOVERNOR = """\
[governor]
telemetry_period_s = 0.2
required_channels = ["board"]
mode_min_dwell_s = 0.0
safe_min_dwell_s = 0.0
limits = []

[governor.actuators]
frequency_ceiling = true
throttled_frequency_fraction = 0.5
"""


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    build_slow_model(d, layers=160)  # about 0.35 s a run on 2 cores
    return d


async def next_board_sample(queue: asyncio.Queue[tuple[str, bytes]], until: float | None = None,
                            timeout_s: float = 10.0) -> Telemetry:
    """The next ``tlm/board`` sample (whose power is ``until`` W, when given)."""
    async def wait() -> Telemetry:
        while True:
            _, payload = await queue.get()
            sample = decode(payload, Telemetry).message
            if until is None or sample.values.get(POWER_W) == pytest.approx(until):
                return sample
    return await asyncio.wait_for(wait(), timeout_s)


async def test_energy_of_a_job_comes_from_the_ina3221(mosquitto: MosquittoBroker, tmp_path: Path,
                                                      models_dir: Path) -> None:
    root = orin_nano_tree(tmp_path / "orin")
    set_vdd_in(root, 5000, 1000)  # 5.0 W: the configured idle power
    port = free_port()
    config = flightd_config(tmp_path / "flightd.toml", root, BOARD_ONLY_GOVERNOR, metrics_port=port)
    async with (running_flightd(mosquitto.url, tmp_path / "data", models_dir, config=config) as proc,
                GroundClient(mosquitto.url, "sat1", timeout_s=30.0) as ground):
        status = await ground.status()
        assert status.board is not None and status.board.kind == "jetson"
        assert "INA3221 rails VDD_IN" in status.board.summary
        assert any("cpufreq ceiling: governor-driven on 2 policies" in a for a in status.board.actuators)
        assert "board: jetson 'NVIDIA Jetson Orin Nano Developer Kit'" in proc.log()

        board = await ground.watch_topic(ground.topics.telemetry(BOARD))
        sample = await next_board_sample(board, until=IDLE_W)
        assert sample.values[TEMP_C] == pytest.approx(48.062)  # tj-thermal
        # Prometheus serves the board's own readings (no plant telemetry here to feed them)
        assert board_gauges(port) == (pytest.approx(IDLE_W), pytest.approx(48.062))

        set_vdd_in(root, 5000, 4000)  # 20 W while the job runs
        await next_board_sample(board, until=20.0)
        await wait_until(lambda: board_gauges(port)[0] == pytest.approx(20.0), 5.0, "20 W on /metrics")
        job = await ground.submit("slow", {"x": np.ones((1, 64, 64, 64), np.float32)})
        result = (await ground.wait_result(job.job_id)).result
        set_vdd_in(root, 5000, 1000)

        run_s = result.run_ms / 1e3
        assert result.energy_source == "measured" and result.energy_j is not None
        # (20 W - 5 W idle) over the run: the meter's interval holds the run and the executor's
        # hand-over around it (a thread hop each way), so it may be a little longer
        assert 15.0 * run_s * 0.99 <= result.energy_j <= 15.0 * (run_s + 0.25)
        estimate = run_s * 2 * 2.5  # 2 threads x the board profile's 2.5 W per busy core
        assert result.energy_j > 2 * estimate, "the core-seconds estimate, not the measured power"

        # after the start-up SAFE (ceiling at the minimum) the governor ran NOMINAL: the ceiling released
        for policy in ("policy0", "policy4"):
            ceiling = root / "sys/devices/system/cpu/cpufreq" / policy / "scaling_max_freq"
            assert ceiling.read_text().strip() == "1728000"


async def test_throttled_pi_lowers_the_cpufreq_ceiling_and_releases_it(mosquitto: MosquittoBroker,
                                                                       tmp_path: Path, models_dir: Path) -> None:
    root = pi5_tree(tmp_path / "pi5", throttled_hex="0")
    flags = root / "sys/devices/platform/soc/soc:firmware/get_throttled"
    ceiling = root / "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq"
    config = flightd_config(tmp_path / "flightd.toml", root, BOARD_ONLY_GOVERNOR)
    async with (running_flightd(mosquitto.url, tmp_path / "data", models_dir, config=config) as proc,
                GroundClient(mosquitto.url, "sat1", timeout_s=30.0) as ground):
        status = await ground.status()
        assert status.board is not None and status.board.kind == "raspberry-pi"
        assert "throttle flags: sysfs" in status.board.summary
        events = await ground.watch_topic(ground.topics.events)
        board = await ground.watch_topic(ground.topics.telemetry(BOARD))
        await wait_until(lambda: ceiling.read_text().strip() == "2400000", 10.0, "the ceiling released")

        flags.write_text("50006\n")  # bits 1 and 2: frequency capped, throttled now (and since boot)
        sample = await next_board_sample(board)
        while sample.values.get(THROTTLED) != 1.0:
            sample = await next_board_sample(board)
        # the soft limit trips after two samples: THROTTLED, and the ceiling at half the range
        await wait_until(lambda: ceiling.read_text().strip() == str(1500000 + 450000), 10.0,
                         "the THROTTLED ceiling (half of 1.5-2.4 GHz)")
        assert (await ground.status()).mode is Mode.THROTTLED
        seen = []
        while not any("cpufreq policy0" in e.message and "applied 1950000 kHz" in e.message for e in seen):
            _, payload = await asyncio.wait_for(events.get(), 10.0)
            seen.append(decode(payload, Event).message)
        event = next(e for e in seen if "applied 1950000 kHz" in e.message)
        assert event.kind is EventKind.BOARD and event.details["ok"] is True

        flags.write_text("50000\n")  # throttling over (the since-boot bits stay)
        await wait_until(lambda: ceiling.read_text().strip() == "2400000", 10.0, "the ceiling released again")
    assert "board: throttled mode: cpufreq policy0: scaling_max_freq 1950000 kHz -> applied 1950000 kHz" in proc.log()


async def test_board_off_and_actuators_the_board_lacks_are_reported(mosquitto: MosquittoBroker, tmp_path: Path,
                                                                    models_dir: Path) -> None:
    """A Jetson tree without nvpmodel (not installed): a configured power mode is refused with the
    reason; with the probes off, no board channel and no board in the status."""
    root = orin_nano_tree(tmp_path / "orin")
    (root / "etc/nvpmodel.conf").unlink()
    governor = BOARD_ONLY_GOVERNOR + '\n[governor.actuators.power_modes]\nnominal = "25W"\n'
    config = flightd_config(tmp_path / "flightd.toml", root, governor)
    async with (running_flightd(mosquitto.url, tmp_path / "data", models_dir, config=config),
                GroundClient(mosquitto.url, "sat1") as ground):
        status = await ground.status()
        assert status.board is not None
        assert any(a.startswith("power mode: configured, not possible here: no /etc/nvpmodel.conf")
                   for a in status.board.actuators), status.board.actuators

    off = tmp_path / "off.toml"
    off.write_text("[board]\nenabled = false\n")
    async with (running_flightd(mosquitto.url, tmp_path / "data2", models_dir, sat="sat2", config=off) as proc,
                GroundClient(mosquitto.url, "sat2") as ground):
        board = await ground.watch_topic(ground.topics.telemetry(BOARD))
        status = await ground.status()
        assert status.board is None
        await asyncio.sleep(1.5)
        assert board.empty()
    assert "board: probes off (board.enabled = false)" in proc.log()
    assert json.dumps(status.model_dump(mode="json"))  # the status without a board is still a valid message
