"""Board detection and sampling on a generic x86 tree and on this machine itself."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import pytest

from flight.board import BoardProbe, detect_board
from flight.board.board import board_kind, read_model
from tests.board_trees import write, x86_tree
from tests.support import ManualClock

RAPL0 = "/sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj"


def test_kind_from_model_and_l4t_release() -> None:
    assert board_kind("Raspberry Pi Compute Module 4 Rev 1.0", None) == "raspberry-pi"
    assert board_kind("NVIDIA Jetson AGX Orin Developer Kit", None) == "jetson"
    assert board_kind(None, "R36.4.3") == "jetson"
    assert board_kind("Pine64 RockPro64 v2.1", None) == "linux"
    assert board_kind(None, None) == "linux"


def test_x86_tree_detected_with_package_temperature_and_rapl(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    board = detect_board(tmp_path)
    assert board.kind == "linux" and board.model == "Standard PC (Q35 + ICH9, 2009)"
    assert board.temp_source == "thermal_zone1 (x86_pkg_temp)"
    assert board.power_source == "rapl" and board.power_detail == "powercap intel-rapl:0 (package-0)"
    assert board.throttle_source is None
    assert board.notes == ("thermal zones without a reading: thermal_zone2 (iwlwifi_1)",)
    clock = ManualClock(100.0)
    probe = BoardProbe(board, clock=clock)
    first = probe.sample()
    assert first.temp_c == 52.0 and first.power_w is None  # power is a rate: needs two readings
    write(tmp_path, RAPL0, "4000000\n")
    clock.t += 1.5
    assert probe.sample().power_w == pytest.approx(2.0)  # 3 J in 1.5 s


def test_root_only_rapl_is_explained(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    zones = ("intel-rapl/intel-rapl:0", "intel-rapl/intel-rapl:0/intel-rapl:0:0", "intel-rapl-mmio/intel-rapl-mmio:0")
    for zone in zones:
        energy = tmp_path / f"sys/devices/virtual/powercap/{zone}/energy_uj"
        energy.unlink()
        energy.mkdir()
    board = detect_board(tmp_path)
    assert board.power_source is None and "not measured" in board.describe()
    assert any("energy_uj" in note and "root-only" in note for note in board.notes)


def test_temperature_from_hwmon_when_no_zone_reads(tmp_path: Path) -> None:
    x86_tree(tmp_path)
    for n in (0, 1):
        temp = tmp_path / f"sys/devices/virtual/thermal/thermal_zone{n}/temp"
        temp.unlink()
        temp.mkdir()
    board = detect_board(tmp_path)
    assert board.temp_source == "hwmon coretemp Package id 0 (hottest sensor)"


def test_empty_root_is_a_board_that_measures_nothing(tmp_path: Path) -> None:
    board = detect_board(tmp_path)
    assert (board.kind, board.temp_source, board.power_source, board.throttle_source) == ("linux", None, None, None)
    sample = BoardProbe(board).sample()
    assert sample.values() == {}


def test_this_machine() -> None:
    root = Path("/")
    board = detect_board(root)
    model = read_model(root)
    if os.path.exists("/etc/nv_tegra_release"):
        assert board.kind == "jetson"
    elif model is not None and model.startswith("Raspberry Pi"):
        assert board.kind == "raspberry-pi"
    else:
        assert board.kind == "linux"
    assert len(board.thermal_zones) == len(glob.glob("/sys/class/thermal/thermal_zone*"))
    assert len(board.cpufreq_policies) == len(glob.glob("/sys/devices/system/cpu/cpufreq/policy*"))
    assert board.describe().startswith(board.kind)
    probe = BoardProbe(board)
    probe.sample()
    time.sleep(0.2)  # /proc/stat counts in 10 ms ticks
    second = probe.sample()
    assert second.busy_cores is not None and 0.0 <= second.busy_cores <= (os.cpu_count() or 1)
    assert (second.temp_c is None) == (board.temp_source is None)
