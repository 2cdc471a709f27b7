"""The emulated Raspberry Pi's files (hil.emulated_pi, scripts/pi-emulated.sh): flightd's probes read
them as a Raspberry Pi 4 with a temperature, throttle flags in sysfs and one cpufreq policy, say they
are emulated, and read the emulated system's own /proc/stat through the link."""

from __future__ import annotations

import time
from pathlib import Path

from flight.board import BoardProbe, detect_board
from flight.board.actuators import FrequencyActuator
from hil.emulated_pi import PI4_KHZ, SOC_MILLI_C, THROTTLED_FILE, lay_out_pi_tree
from tests.test_board_raspberry_pi import no_commands


def test_the_probes_read_the_emulated_pi(tmp_path: Path) -> None:
    tree = lay_out_pi_tree(tmp_path / "pi-board")
    board = detect_board(tree, runner=no_commands)  # as in the root: no vcgencmd installed
    assert board.kind == "raspberry-pi" and "emulated" in board.model
    assert board.throttle_source == "sysfs" and board.power_source is None
    assert board.cpufreq_policies == ("policy0",)
    assert "emulated" in (tree / "EMULATED.txt").read_text().lower()

    probe = BoardProbe(board)
    first = probe.sample()
    assert first.temp_c == SOC_MILLI_C / 1000 and first.throttled is False and first.under_voltage is False
    (tree / THROTTLED_FILE).write_text("50005\n")
    time.sleep(0.2)  # /proc/stat counts in 10 ms ticks: let some pass
    second = probe.sample()
    assert second.under_voltage is True and second.throttled is True
    assert second.busy_cores is not None  # this machine's /proc/stat, through the link

    actions = FrequencyActuator(tree).set_fraction(0.5)
    assert [a.applied for a in actions] == [f"{(PI4_KHZ[0] + PI4_KHZ[1]) // 2} kHz"]
    lay_out_pi_tree(tree)  # a new run starts from the laid-out state again
    assert (tree / THROTTLED_FILE).read_text() == "0\n"
