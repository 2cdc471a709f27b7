"""Raspberry Pi probes: throttled bits from sysfs and vcgencmd, the Pi 5's PMIC rails, detection."""

from __future__ import annotations

import stat
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from flight.board import BoardProbe, detect_board, raspberry_pi
from flight.board.command import CommandResult, run_command
from tests.board_trees import PI5_PMIC, pi4_tree, pi5_tree, write

NOT_REGISTERED = 'error=1 error_msg="Command not registered"\n'


class Vcgencmd:
    """A runner answering ``vcgencmd`` as the firmware does (documented output), counting calls."""

    def __init__(self, throttled: str = "throttled=0x0\n", pmic: str = NOT_REGISTERED) -> None:
        self.answers = {"get_throttled": throttled, "pmic_read_adc": pmic}
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(tuple(argv))
        if argv[0] != "vcgencmd":
            return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
        return CommandResult(tuple(argv), 0, self.answers[argv[1]], "")


def no_commands(argv: Sequence[str]) -> CommandResult:
    return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found")


@pytest.mark.parametrize(
    ("text", "raw"),
    [("throttled=0x50005", 0x50005), ("throttled=0x0\n", 0), ("50005\n", 0x50005), ("80008", 0x80008), ("0", 0)],
)
def test_parse_throttled_both_forms(text: str, raw: int) -> None:
    flags = raspberry_pi.parse_throttled(text)
    assert flags is not None and flags.raw == raw


def test_parse_throttled_refuses_junk() -> None:
    assert raspberry_pi.parse_throttled("error=2 error_msg=\"Invalid arguments\"") is None
    assert raspberry_pi.parse_throttled("") is None


def test_throttled_bits_as_documented() -> None:
    flags = raspberry_pi.ThrottleFlags(0x50005)  # under-voltage and throttled now, both since boot
    assert flags.under_voltage and flags.throttled and flags.limited
    assert not flags.freq_capped and not flags.soft_temp_limit
    assert flags.under_voltage_since_boot and flags.throttled_since_boot
    history = raspberry_pi.ThrottleFlags(0x80000)  # soft limit reached earlier, not now
    assert not history.limited and not history.under_voltage and history.throttled_since_boot
    soft = raspberry_pi.ThrottleFlags(0x8)
    assert soft.soft_temp_limit and soft.limited and not soft.throttled
    capped = raspberry_pi.ThrottleFlags(0x2)
    assert capped.freq_capped and capped.limited


def test_pmic_rails_pair_current_and_voltage_by_name() -> None:
    rails = raspberry_pi.parse_pmic_read_adc(PI5_PMIC)
    names = [r.name for r in rails]
    assert names == ["3V7_WL_SW", "3V3_SYS", "1V8_SYS", "DDR_VDD2", "DDR_VDDQ", "1V1_SYS", "0V8_SW", "VDD_CORE"]
    core = rails[-1]
    assert (core.volts, core.amps) == (0.861733, 2.22421)
    assert core.watts == pytest.approx(0.861733 * 2.22421)
    assert "EXT5V" not in names and "BATT" not in names  # voltages without a current are not rails


def test_pmic_odd_lines() -> None:
    text = "  VDD_CORE_A current(7)=nanA\n  VDD_CORE_V volt(15)=0.8V\n  X_A current(1)=0.5A\n garbage line\n"
    assert raspberry_pi.parse_pmic_read_adc(text) == []
    assert raspberry_pi.parse_pmic_read_adc(NOT_REGISTERED) == []


def test_throttled_from_sysfs_first(tmp_path: Path) -> None:
    pi5_tree(tmp_path, throttled_hex="50005")
    runner = Vcgencmd(throttled="throttled=0x0\n")
    board = detect_board(tmp_path, runner)
    assert board.throttle_source == "sysfs"
    sample = BoardProbe(board, runner).sample()
    assert sample.under_voltage is True and sample.throttled is True and sample.throttle_raw == 0x50005
    assert ("vcgencmd", "get_throttled") not in runner.calls


def test_throttled_at_a_device_tree_name_with_unit_address(tmp_path: Path) -> None:
    pi5_tree(tmp_path)
    (tmp_path / "sys/devices/platform/soc/soc:firmware/get_throttled").unlink()
    write(tmp_path, "/sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled", "8\n")
    flags = raspberry_pi.read_throttled_sysfs(tmp_path)
    assert flags is not None and flags.soft_temp_limit


def test_pi5_detected_with_soc_temperature_pmic_power_and_flags(tmp_path: Path) -> None:
    pi5_tree(tmp_path, throttled_hex="0")
    runner = Vcgencmd(pmic=PI5_PMIC)
    board = detect_board(tmp_path, runner)
    assert board.kind == "raspberry-pi" and board.model == "Raspberry Pi 5 Model B Rev 1.0"
    assert board.temp_source == "thermal_zone0 (cpu-thermal)"
    assert board.power_source == "pmic" and "8 rails" in (board.power_detail or "")
    assert board.cpufreq_policies == ("policy0",)
    sample = BoardProbe(board, runner).sample()
    assert sample.temp_c == 61.25
    expected = sum(r.watts for r in raspberry_pi.parse_pmic_read_adc(PI5_PMIC))
    assert sample.power_w == pytest.approx(expected)
    assert len(sample.rails) == 8
    assert sample.under_voltage is False and sample.throttled is False
    assert sample.values() == {"temp_c": 61.25, "power_w": pytest.approx(expected), "under_voltage": 0.0,
                               "throttled": 0.0}


def test_pi4_falls_back_to_vcgencmd_and_has_no_power_sensor(tmp_path: Path) -> None:
    pi4_tree(tmp_path)
    runner = Vcgencmd(throttled="throttled=0x20002\n")
    board = detect_board(tmp_path, runner)
    assert board.kind == "raspberry-pi"
    assert board.throttle_source == "vcgencmd"
    assert board.power_source is None
    assert any("Raspberry Pi 5" in note for note in board.notes)
    sample = BoardProbe(board, runner).sample()
    assert sample.throttled is True and sample.under_voltage is False  # ARM frequency capped
    assert sample.power_w is None and sample.temp_c == 48.5


def test_pi_without_vcgencmd_says_so(tmp_path: Path) -> None:
    pi4_tree(tmp_path)
    board = detect_board(tmp_path, no_commands)
    assert board.throttle_source is None
    assert any("throttled bits unreadable" in note for note in board.notes)
    assert BoardProbe(board, no_commands).sample().throttled is None


def test_real_runner_runs_a_vcgencmd_and_reports_failures(tmp_path: Path) -> None:
    tool = tmp_path / "vcgencmd"
    tool.write_text('#!/bin/sh\ncase "$1" in get_throttled) echo "throttled=0x50000";; '
                    '*) echo "error=2 error_msg=\\"Invalid arguments\\""; exit 2;; esac\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    flags = raspberry_pi.query_throttled(run_command, vcgencmd=str(tool))
    assert flags is not None and flags.raw == 0x50000 and not flags.limited
    assert raspberry_pi.query_pmic_rails(run_command, vcgencmd=str(tool)) == []
    failed = run_command([str(tool), "bogus"])
    assert failed.returncode == 2 and "Invalid arguments" in failed.failure()
    missing = run_command([str(tmp_path / "no-such-tool")])
    assert missing.returncode == 127 and not missing.ok
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nsleep 5 &\nsleep 5\n")  # a child keeps the pipes open too
    slow.chmod(0o755)
    timed_out = run_command([str(slow)], timeout_s=0.2)
    assert timed_out.returncode == 124 and "timed out" in timed_out.failure()
    started = time.monotonic()
    assert run_command([str(slow)], timeout_s=0.2).returncode == 124
    assert time.monotonic() - started < 3.0  # the background child was killed with its group
