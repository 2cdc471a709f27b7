"""Jetson probes on Orin Nano and AGX Orin trees: INA3221 rails, thermal zones, nvpmodel, detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.board import BoardProbe, detect_board, jetson
from tests.board_trees import ORIN_NANO_NVPMODEL_CONF, agx_orin_tree, orin_nano_tree, unreadable, write

HWMON1 = "/sys/devices/platform/bus@0/c240000.i2c/i2c-1/1-0040/hwmon/hwmon1"


def test_orin_nano_rails_in_volts_and_amps(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path)
    rails = jetson.read_ina3221_rails(tmp_path)
    assert [(r.name, r.volts, r.amps) for r in rails] == [
        ("VDD_IN", 5.08, 1.232), ("VDD_CPU_GPU_CV", 5.072, 0.4), ("VDD_SOC", 5.072, 0.56)
    ]
    # VDD_IN is the module's input: the board's power, not the sum of it and its parts
    assert jetson.board_power_w(rails) == pytest.approx(5.08 * 1.232)


def test_chip_found_once_through_class_and_driver_links(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path)
    assert len(jetson.ina3221_dirs(tmp_path)) == 1
    (tmp_path / "sys/class/hwmon/hwmon1").unlink()  # only the I2C driver's view left
    assert len(jetson.read_ina3221_rails(tmp_path)) == 3


def test_nc_channels_and_the_sum_channel_are_not_rails(tmp_path: Path) -> None:
    agx_orin_tree(tmp_path)
    rails = jetson.read_ina3221_rails(tmp_path)
    names = [r.name for r in rails]
    assert names == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    # no VDD_IN on the AGX: the sum of the rails; curr4 (summed current) is not added
    assert jetson.board_power_w(rails) == pytest.approx(5.0 * (1.6 + 0.8 + 0.9 + 0.2))


def test_disabled_unreadable_and_missing_channels_are_skipped(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path)
    write(tmp_path, f"{HWMON1}/in2_enable", "0\n")
    (tmp_path / f"{HWMON1.lstrip('/')}/curr3_input").unlink()
    unreadable(tmp_path, f"{HWMON1}/curr3_input")
    (tmp_path / f"{HWMON1.lstrip('/')}/in1_label").unlink()
    assert jetson.read_ina3221_rails(tmp_path) == []
    assert jetson.board_power_w([]) is None


def test_nvpmodel_conf_status_and_query_parsing() -> None:
    config = jetson.parse_nvpmodel_conf(ORIN_NANO_NVPMODEL_CONF)
    assert [(m.id, m.name) for m in config.modes] == [(0, "15W"), (1, "25W"), (2, "MAXN_SUPER"), (3, "7W")]
    assert config.default_id == 2
    assert config.mode("maxn_super") == jetson.PowerMode(2, "MAXN_SUPER")
    assert config.mode(9) is None
    assert jetson.parse_nvpmodel_status("pmode:0003 fmode:quiet\n") == 3
    assert jetson.parse_nvpmodel_status("garbage") is None
    query = "NVPM WARN: fan mode is not set!\nNV Fan Mode:quiet\nNV Power Mode: 25W\n1\n"
    assert jetson.parse_nvpmodel_query(query) == 1
    assert jetson.parse_nvpmodel_query("NV Power Mode: 25W\n") is None


def test_current_mode_from_status_else_default(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path, pmode=1)
    state = jetson.read_power_mode(tmp_path)
    assert state is not None and state.current == jetson.PowerMode(1, "25W")
    assert state.source == "/var/lib/nvpmodel/status"
    (tmp_path / "var/lib/nvpmodel/status").unlink()
    state = jetson.read_power_mode(tmp_path)
    assert state is not None and state.current == jetson.PowerMode(2, "MAXN_SUPER")
    assert "default" in state.source
    assert jetson.read_power_mode(tmp_path / "elsewhere") is None


def test_orin_nano_detected_and_sampled(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path)
    board = detect_board(tmp_path)
    assert board.kind == "jetson" and board.model == "NVIDIA Jetson Orin Nano Developer Kit"
    assert board.release == "R36.4.3"
    assert board.temp_source == "thermal_zone8 (tj-thermal)"
    assert board.power_source == "ina3221" and "VDD_IN" in (board.power_detail or "")
    assert board.power_mode is not None and board.power_mode.current == jetson.PowerMode(1, "25W")
    assert board.cpufreq_policies == ("policy0", "policy4")
    assert any("cv0" in note for note in board.notes)  # the DLA zones that do not read
    assert "power mode: 25W (id 1)" in board.describe()
    probe = BoardProbe(board)
    first = probe.sample()
    assert first.temp_c == 48.062
    assert first.power_w == pytest.approx(5.08 * 1.232)
    assert first.under_voltage is None and first.throttled is None  # a Jetson has no such flags
    assert first.busy_cores is None  # needs two readings
    write(tmp_path, f"{HWMON1}/curr1_input", "2000\n")
    # cpu0: 200 more busy ticks of 300; cpu1: idle the whole time
    write(tmp_path, "/proc/stat", "cpu0 400 5 100 600 20 3 2 0 0 0\ncpu1 200 5 100 800 20 2 3 0 0 0\n")
    second = probe.sample()
    assert second.power_w == pytest.approx(5.08 * 2.0)
    assert second.busy_cores == pytest.approx(2 / 3)


def test_jetson_temperature_falls_back_to_the_hottest_zone(tmp_path: Path) -> None:
    orin_nano_tree(tmp_path)
    tj = tmp_path / "sys/devices/virtual/thermal/thermal_zone8/temp"
    tj.unlink()
    tj.mkdir()
    cpu = tmp_path / "sys/devices/virtual/thermal/thermal_zone0/temp"
    cpu.write_text("")
    board = detect_board(tmp_path)
    assert board.temp_source == "thermal_zone6 (soc1-thermal, hottest zone)"
    sample = BoardProbe(board).sample()
    assert sample.temp_c == 47.093  # soc1, the hottest zone that still reads
